"""Specs from SQLAlchemy models: `source.model: "shop.models:Product"`, resolved at the edge.

The user's module is imported and its mapper read here, before validation, and the result is
the plain `source` mapping the YAML form spells by hand (table, primary_key, updated_at, and
one RelationSpec mapping per named `relationship()`): core never sees a model. Whatever the
spec states itself wins over what the model says, so every YAML option stays an override.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper, RelationshipDirection, RelationshipProperty
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList, ColumnClause

from sync_pipeline.core.spec import model as core_specs
from sync_pipeline.core.spec.errors import Path as KeyPath
from sync_pipeline.core.spec.errors import describe, did_you_mean, dotted
from sync_pipeline.core.spec.model import SpecError, SyncSpec
from sync_pipeline.io.catalog import UnknownTable, describe_table

KINDS = {
    RelationshipDirection.MANYTOONE: "many_to_one",
    RelationshipDirection.ONETOMANY: "one_to_many",
    RelationshipDirection.MANYTOMANY: "many_to_many",
}


class ModelError(ValueError):
    """What a model reference or a relationship name cannot give; `key` is where, below `source`."""

    def __init__(self, key: KeyPath, message: str) -> None:
        super().__init__(message)
        self.key = key


def import_model(reference: str, base: Path | None = None) -> Mapper[Any]:
    """The mapper of `module:Class`; the module is looked up on sys.path, then beside the spec
    file (`base`), as Alembic's `prepend_sys_path = .` does."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ModelError(("model",), f"{reference!r} must be 'module:Class' (e.g. 'shop.models:Product')")
    module = _import(module_name, base)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            raise ModelError(
                ("model",), f"module {module_name!r} has no {attribute!r}" + did_you_mean(part, names)
            )
        target = getattr(target, part)
    mapper = sa.inspect(target, raiseerr=False) if isinstance(target, type) else None
    if not isinstance(mapper, Mapper):
        raise ModelError(
            ("model",), f"{reference!r} is not a SQLAlchemy mapped class (declare it on a DeclarativeBase)"
        )
    return mapper


def _import(module_name: str, base: Path | None) -> Any:
    added = base is not None and str(base) not in sys.path
    if added:
        sys.path.insert(0, str(base))
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(("model",), f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the user's module failed while importing: say so, with its error
        raise ModelError(
            ("model",), f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        if added:
            sys.path.remove(str(base))


def model_source(
    mapper: Mapper[Any], source: Mapping[str, Any], reference: str, schema: str | None = None
) -> dict[str, Any]:
    """The plain `source` mapping for `mapper`: what `source` states wins; `relations` entries
    that are names (or mappings whose name is a relationship) are derived."""
    derived: dict[str, Any] = {
        "model": reference,
        "table": _table_name(mapper.local_table, schema),
        "primary_key": [c.name for c in mapper.primary_key],
    }
    if "updated_at" not in source:
        derived["updated_at"] = _updated_at(mapper, reference)
    else:
        derived["updated_at"] = _column_name(mapper, source["updated_at"])
    rest = {k: v for k, v in source.items() if k not in ("model", "schema", "updated_at", "relations")}
    relations = _relations(mapper, source.get("relations") or [], reference, schema)
    return {**derived, **rest, "relations": relations}


def _table_name(table: Any, schema: str | None) -> str:
    where = schema or table.schema
    return f"{where}.{table.name}" if where else str(table.name)


def _column_name(mapper: Mapper[Any], name: Any) -> Any:
    """A mapped attribute's column name (`updated = mapped_column("updated_at")`); else as given."""
    attribute = mapper.column_attrs.get(name) if isinstance(name, str) else None
    return attribute.columns[0].name if attribute is not None else name


def _updated_at(mapper: Mapper[Any], reference: str) -> str:
    stamped = [c.name for c in mapper.local_table.columns if c.onupdate is not None]
    if len(stamped) == 1:
        return stamped[0]
    if not stamped:
        why = f"no column of {reference} has onupdate"
    else:
        why = f"several columns of {reference} have onupdate ({', '.join(stamped)})"
    raise ModelError(("updated_at",), f"required: {why}, so name the column that moves on every write")


def _relations(
    mapper: Mapper[Any], entries: Sequence[Any], reference: str, schema: str | None
) -> list[dict[str, Any]]:
    """Dotted names become nested relations (`category.department` under `category`, which is
    added when not named itself); entry order is kept."""
    if not isinstance(entries, list):
        return entries  # type: ignore[return-value]  # pydantic names the wrong shape
    roots: list[Any] = []
    for index, entry in enumerate(entries):
        overrides = entry if isinstance(entry, dict) else {}
        name = entry if isinstance(entry, str) else overrides.get("name")
        if not isinstance(name, str) or ("table" in overrides and name not in mapper.relationships):
            roots.append(entry)  # spelled out in full (or malformed: pydantic says what is wrong)
            continue
        siblings, owner = roots, mapper
        parts = name.split(".")
        for depth, part in enumerate(parts):
            known = sorted(owner.relationships.keys())
            if part not in known:
                where = ".".join(parts[:depth]) or reference
                raise ModelError(
                    ("relations", index),
                    f"{part!r} is no relationship() of {where} (its relationships: "
                    f"{', '.join(known) or 'none'})" + did_you_mean(part, known),
                )
            prop = owner.relationships[part]
            found = next((r for r in siblings if isinstance(r, dict) and r.get("name") == part), None)
            last = depth == len(parts) - 1
            if found is None:
                found = _derive(prop, overrides if last else {}, schema, index)
                siblings.append(found)
            elif last:
                found.update({k: v for k, v in overrides.items() if k != "name"})
            siblings, owner = found.setdefault("relations", []), prop.mapper
    return roots


def _derive(
    prop: RelationshipProperty[Any], overrides: Mapping[str, Any], schema: str | None, index: int
) -> dict[str, Any]:
    extra = _beyond_equalities(prop)
    if extra is not None:  # dropping the condition would put rows in documents the model leaves out
        raise ModelError(
            ("relations", index),
            f"relationship {prop.key!r} joins on more than equal columns ({extra}): write the relation "
            "out in full (table, kind, on) or use a `query` source",
        )
    kind = KINDS[prop.direction]
    derived: dict[str, Any] = {
        "name": prop.key,
        "table": _table_name(prop.mapper.local_table, schema),
        "kind": kind,
    }
    if kind == "many_to_many":
        assert prop.secondary is not None
        derived["through"] = {
            "table": _table_name(prop.secondary, schema),
            "on": {secondary.name: parent.name for parent, secondary in prop.synchronize_pairs},
            "to": {
                secondary.name: target.name for target, secondary in prop.secondary_synchronize_pairs or []
            },
        }
    else:
        derived["on"] = {remote.name: local.name for local, remote in prop.local_remote_pairs}
    return {**derived, **{k: v for k, v in overrides.items() if k != "name"}}


def _beyond_equalities(prop: RelationshipProperty[Any]) -> str | None:
    """The first term of the relationship's join that is not `column = column`, as SQL."""
    for join in (prop.primaryjoin, prop.secondaryjoin):
        pending = [join] if join is not None else []
        while pending:
            clause = pending.pop(0)
            if isinstance(clause, BooleanClauseList) and clause.operator is operators.and_:
                pending += list(clause.clauses)
            elif not (
                isinstance(clause, BinaryExpression)
                and clause.operator is operators.eq
                and isinstance(clause.left, ColumnClause)
                and isinstance(clause.right, ColumnClause)
            ):
                return str(clause)
    return None


def expand_models(
    raw: dict[str, Any], base: Path | None = None
) -> tuple[dict[str, Any], list[tuple[KeyPath, str]]]:
    """core/spec/model.Expand: each spec's `source.model` resolved into the plain source mapping."""
    specs = raw.get("specs")
    if not isinstance(specs, list):
        return raw, []
    problems: list[tuple[KeyPath, str]] = []
    expanded = []
    for position, spec in enumerate(specs):
        source = spec.get("source") if isinstance(spec, dict) else None
        if not isinstance(source, dict) or not isinstance(source.get("model"), str):
            expanded.append(spec)
            continue
        try:
            mapper = import_model(source["model"], base)
            spec = {**spec, "source": model_source(mapper, source, source["model"], source.get("schema"))}
        except ModelError as exc:
            problems.append((("specs", position, "source", *exc.key), str(exc)))
        expanded.append(spec)
    return {**raw, "specs": expanded}, problems


def parse_specs(text: str, origin: str = "<string>", base: Path | None = None) -> list[SyncSpec]:
    return core_specs.parse_specs(text, origin, expand=lambda raw: expand_models(raw, base))


def load_specs(path: str | Path) -> list[SyncSpec]:
    """The spec file, its models resolved (their modules found on sys.path or beside the file)."""
    path = Path(path)
    base = path.resolve().parent
    return core_specs.load_specs(path, expand=lambda raw: expand_models(raw, base))


def spec_from_model(
    model: type,
    *,
    relations: Iterable[str | Mapping[str, Any]] = (),
    name: str | None = None,
    index: str | None = None,
    updated_at: str | None = None,
    schema: str | None = None,
    source: Mapping[str, Any] | None = None,
    **options: Any,
) -> SyncSpec:
    """A SyncSpec from a mapped class: `relations` as in YAML (names, dotted for depth, or
    mappings), `schema` the tables' schema when not the model's, `source` more source keys
    (soft_delete, …), `options` any other spec key (partitions, fields, target, batch_size, …)."""
    reference = f"{model.__module__}:{model.__qualname__}"
    given = {**(source or {}), "relations": [dict(r) if isinstance(r, Mapping) else r for r in relations]}
    if updated_at is not None:
        given["updated_at"] = updated_at
    mapper = sa.inspect(model, raiseerr=False)
    try:
        if not isinstance(mapper, Mapper):
            raise ModelError(("model",), f"{reference!r} is not a SQLAlchemy mapped class")
        plain = model_source(mapper, given, reference, schema)
    except ModelError as exc:
        raise SpecError(f"{reference}: {dotted(('source', *exc.key))}: {exc}") from None
    spec_name = name or str(mapper.local_table.name)
    raw: dict[str, Any] = {
        "name": spec_name,
        "source": plain,
        "target": {"index": index or spec_name},
        **options,
    }
    try:
        return SyncSpec.model_validate(raw)
    except ValidationError as exc:
        problems = describe(SyncSpec, raw, exc.errors(), {}, reference)
        raise SpecError("\n".join([f"{reference}: invalid sync spec", *problems])) from None


def model_mismatches(conn: Connection, spec: SyncSpec) -> list[str]:
    """Each column the spec's model (and each named relationship's model) maps that its table
    lacks — renamed or dropped by a migration the models never saw — or holds as a type of
    another family, one line each."""
    if spec.source.model is None or spec.source.table is None:
        return []
    try:
        mapper = import_model(spec.source.model)
    except ModelError as exc:
        return [f"model {spec.source.model}: {exc}"]
    tables = [(spec.source.model, mapper.local_table, spec.source.table)]
    for path, relation in spec.source.all_relations():
        owner: Mapper[Any] | None = mapper
        for part in path.split("."):
            prop = owner.relationships.get(part) if owner is not None else None
            owner = prop.mapper if prop is not None else None
        if owner is not None:
            tables.append((f"{spec.source.model} → {path}", owner.local_table, relation.table))
    found = []
    for what, table, name in tables:
        try:
            present = {c.name: c.type for c in describe_table(conn, name).columns}
        except UnknownTable:
            found.append(f"model {what} maps table {name}, which the database lacks")
            continue
        for column in table.columns:
            if column.name not in present:
                found.append(
                    f"model {what} maps column {column.name!r} that table {name} lacks (renamed or dropped "
                    "by a migration?)" + did_you_mean(column.name, sorted(present))
                )
                continue
            mapped, held = _model_family(column.type), _database_family(present[column.name])
            if mapped and held and mapped != held:
                found.append(
                    f"model {what} maps column {column.name!r} as {type(column.type).__name__} (a {mapped}) "
                    f"that table {name} holds as {present[column.name]}"
                )
    return found


# coarse families, compared only when both sides fall in one: a model's Enum, a TypeDecorator or
# a domain says nothing this can check, and Integer over bigint is no mismatch
_MODEL_FAMILIES: list[tuple[type, str]] = [
    (sa.Boolean, "boolean"),
    (sa.Integer, "integer"),
    (sa.Numeric, "number"),
    (sa.Enum, ""),
    (sa.String, "text"),
    (sa.DateTime, "timestamp"),
    (sa.Date, "date"),
    (sa.JSON, "json"),
    (sa.ARRAY, "array"),
]


def _model_family(kind: Any) -> str:
    for base, family in _MODEL_FAMILIES:
        if isinstance(kind, base):
            return family
    return ""


def _database_family(held: str) -> str:
    """format_type()'s spelling of a column's type → its family ('' when none applies)."""
    if held.endswith("[]"):
        return "array"
    head = held.split("(")[0].strip()
    families = {
        "boolean": "boolean",
        "smallint": "integer",
        "integer": "integer",
        "bigint": "integer",
        "numeric": "number",
        "real": "number",
        "double precision": "number",
        "text": "text",
        "character varying": "text",
        "character": "text",
        "timestamp with time zone": "timestamp",
        "timestamp without time zone": "timestamp",
        "timestamp": "timestamp",
        "date": "date",
        "json": "json",
        "jsonb": "json",
    }
    return families.get(head, "")
