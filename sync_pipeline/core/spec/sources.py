"""Where a spec's documents come from: the root table (or query) and the related tables.

Part of the spec model (core/spec/model.py assembles it). A relation declares how
rows of another table join the document — an object (`many_to_one`), an array
of objects (`one_to_many`, or `many_to_many` through a join table) — at any
depth; sync_pipeline generates the SQL and the change fan-out from it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sync_pipeline.core.spec.errors import did_you_mean

RelationKind = Literal["many_to_one", "one_to_many", "many_to_many"]
RELATION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# column names the generated SQL adds to every read: never a source column or a relation
RESERVED_PREFIX = "__sync_"


class Strict(BaseModel):
    """The base of the spec models: an unknown key is refused (a typo is an error, never a
    silent default), and a validated spec is frozen (everything downstream may trust it as it is)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Strict(Strict):
    model_config = ConfigDict(populate_by_name=True)


def split_table(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def check_table_name(value: str) -> str:
    if not value.strip() or value.count(".") > 1:
        raise ValueError(f"{value!r} must be 'table' or 'schema.table'")
    return value


def _one_as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _check_join(value: dict[str, str], what: str) -> dict[str, str]:
    if not value:
        raise ValueError(f"{what} needs at least one {{<column>: <column>}} pair")
    return value


def check_select(value: str, what: str = "") -> str:
    stripped = value.strip().rstrip(";").strip()
    if not re.match(r"(?is)^(select|with)\b", stripped):
        raise ValueError(f"{what}must be a SELECT (or WITH ... SELECT) statement")
    if ";" in stripped:
        raise ValueError(f"{what}must be a single statement (no ';' inside)")
    return stripped


def _unique_names(relations: list[RelationSpec]) -> None:
    names = [r.name for r in relations]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"relation names must be unique; repeated: {repeated}")


class ThroughSpec(_Strict):
    """The join table of a many-to-many relation."""

    table: str
    on: dict[str, str] = Field(description="{<join table column>: <parent column>}")
    to: dict[str, str] = Field(description="{<join table column>: <related table column>}")

    _table = field_validator("table")(classmethod(lambda cls, v: check_table_name(v)))

    @field_validator("on", "to")
    @classmethod
    def _pairs(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_join(value, "through.on/to")


class RelationSpec(_Strict):
    """A related table whose rows become a field of the document."""

    name: str = Field(description="the field of the document")
    table: str
    kind: RelationKind
    on: dict[str, str] | None = Field(
        default=None, description="{<related column>: <parent column>} (not for many_to_many)"
    )
    through: ThroughSpec | None = None
    columns: list[str] | None = Field(default=None, description="default: every column")
    primary_key: list[str] | None = Field(
        default=None, description="the related table's key (default: its PRIMARY KEY): array order"
    )
    nested: bool = Field(default=False, description="map an array of objects as Elasticsearch `nested`")
    relations: list[RelationSpec] = Field(default_factory=list)

    _table = field_validator("table")(classmethod(lambda cls, v: check_table_name(v)))
    _key = field_validator("primary_key", mode="before")(classmethod(lambda cls, v: _one_as_list(v)))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RELATION_NAME.match(value) or value.startswith(RESERVED_PREFIX):
            raise ValueError("must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, not __sync_…)")
        return value

    @model_validator(mode="after")
    def _shape(self) -> RelationSpec:
        if self.kind == "many_to_many":
            if self.through is None:
                raise ValueError("a many_to_many relation needs `through: {table, on, to}`")
            if self.on is not None:
                raise ValueError("a many_to_many relation joins through `through.on`/`through.to`, not `on`")
        else:
            if self.through is not None:
                raise ValueError(f"`through` is only for many_to_many, not {self.kind}")
            if not self.on:
                raise ValueError(f"a {self.kind} relation needs `on: {{<related column>: <parent column>}}`")
        if self.nested and self.kind == "many_to_one":
            raise ValueError("`nested` maps arrays of objects; a many_to_one relation is one object")
        _unique_names(self.relations)
        return self

    @property
    def is_array(self) -> bool:
        return self.kind != "many_to_one"

    def walk(self, prefix: str = "") -> list[tuple[str, RelationSpec]]:
        """(dotted path, relation) for this relation and every one below it, depth first."""
        path = f"{prefix}{self.name}"
        found = [(path, self)]
        for child in self.relations:
            found += child.walk(path + ".")
        return found


class ChangeTableSpec(_Strict):
    """A table whose changes feed the buffer of a `query` spec, and how a changed row of it maps
    to document keys."""

    table: str
    roots: str | None = Field(
        default=None,
        description="SELECT returning the document keys for the changed rows' keys, given as :keys "
        "(default: the table carries the document's key columns under the same names)",
    )

    _table = field_validator("table")(classmethod(lambda cls, v: check_table_name(v)))

    @field_validator("roots")
    @classmethod
    def _roots(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = check_select(value)
        if not re.search(r"(?<![:\w]):keys\b", value):
            raise ValueError("must use :keys (the changed rows' keys, as an array)")
        return value


class SourceSpec(_Strict):
    model: str | None = Field(
        default=None,
        description="'module:Class', a SQLAlchemy mapped class: the loader (io/models.py) fills "
        "table, key, updated_at and relations from it; kept so `validate` can compare it with the database",
    )
    table: str | None = None
    query: str | None = None
    primary_key: Annotated[list[str], Field(min_length=1)]
    updated_at: str
    soft_delete: str | None = Field(
        default=None, description="column; a row whose value is true or non-null is deleted in ES"
    )
    relations: list[RelationSpec] = Field(default_factory=list)
    change_tables: list[ChangeTableSpec] = Field(
        default_factory=list,
        description="for `query` specs: tables whose triggers feed the change buffer",
    )
    version: Any = Field(default=None, exclude=True)

    _key = field_validator("primary_key", mode="before")(classmethod(lambda cls, v: _one_as_list(v)))

    @model_validator(mode="before")
    @classmethod
    def _model_resolved(cls, raw: Any) -> Any:
        # the loader replaces a model by its table; here, the file was read without it
        if isinstance(raw, dict) and raw.get("model") is not None and raw.get("table") is None:
            raise ValueError(
                f"model {raw['model']!r} was not resolved: load the file with "
                "sync_pipeline.io.models.load_specs (the CLI, Dagster and Flask do)"
            )
        return raw

    @field_validator("table")
    @classmethod
    def _table_shape(cls, value: str | None) -> str | None:
        return check_table_name(value) if value is not None else None

    @field_validator("change_tables", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"table": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("query")
    @classmethod
    def _query_is_select(cls, value: str | None) -> str | None:
        return check_select(value) if value is not None else None

    @field_validator("version")
    @classmethod
    def _no_version(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(
                "is no longer used: document versions come from the PostgreSQL snapshot each row "
                "was read in (docs/architecture.md, 'Versions'); remove the key"
            )
        return value

    @model_validator(mode="after")
    def _shape(self) -> SourceSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        if self.relations and self.query is not None:
            raise ValueError("relations need a `table` source (a query joins what it needs itself)")
        if self.table is not None and any(c.table != self.table or c.roots for c in self.change_tables):
            raise ValueError(
                "change_tables are for `query` sources; a `table` source watches its table and "
                "every table of its relations"
            )
        _unique_names(self.relations)
        return self

    @property
    def schema_and_table(self) -> tuple[str | None, str]:
        assert self.table is not None
        return split_table(self.table)

    def all_relations(self) -> list[tuple[str, RelationSpec]]:
        """(dotted path, relation) of every relation at every depth."""
        return [item for relation in self.relations for item in relation.walk()]

    def field_path_problem(self, name: str) -> str | None:
        """What is wrong with a `fields` key that names a relation's column (`category.name`,
        `reviews.author.name`): a path that is no relation, or a column the relation does not
        read (when it lists its `columns`), with the key meant when one is close. None when
        nothing can be told without the database (a plain column, a relation reading every
        column)."""
        if "." not in name:
            return None
        path, _, column = name.rpartition(".")
        known = dict(self.all_relations())
        relation = known.get(path)
        if relation is None:
            listed = ", ".join(sorted(known)) or "none"
            candidates = [f"{p}.{c}" for p, r in known.items() for c in (r.columns or [column])]
            return f"'{path}' is no relation of the source (relations: {listed})" + did_you_mean(
                name, candidates
            )
        if relation.columns is not None and column not in relation.columns:
            return (
                f"relation '{path}' reads no column '{column}' (its columns: "
                f"{', '.join(relation.columns) or 'none'})"
                + did_you_mean(name, [f"{path}.{c}" for c in relation.columns])
            )
        return None
