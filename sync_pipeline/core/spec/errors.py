"""Spec errors as an editor wants them: the YAML line, the key path, and a suggestion.

`sync.yaml:12: specs[0].source.primery_key: unknown key; did you mean 'primary_key'?`

The line comes from the YAML node tree (each key's start mark), found by the error's path;
the suggestion from the keys the model accepts at that place, found by walking the pydantic
models along the same path. Pure: text and error lists in, lines out.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

Path = tuple[str | int, ...]

DURATION_HINT = 'use an ISO 8601 duration like PT10M (ten minutes), "HH:MM:SS" or a number of seconds'
_DURATION_ERRORS = {"time_delta_parsing", "time_delta_type"}
# the `*_seconds` keys are plain numbers, not durations
SECONDS_HINT = "a number of seconds, e.g. 600 for ten minutes"
_NUMBER_ERRORS = {"float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"}


def key_lines(text: str, loader: type[yaml.SafeLoader]) -> dict[Path, int]:
    """Every key path of the document → the 1-based line it starts on (a mapping key's line, a
    sequence item's first line); the root is line 1. Empty for a document that does not compose."""
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError:
        return {}
    lines: dict[Path, int] = {(): 1}

    def walk(node: yaml.Node, path: Path) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, key.value if isinstance(key, yaml.ScalarNode) else str(key.value))
                lines.setdefault(child, key.start_mark.line + 1)
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*path, index), item.start_mark.line + 1)
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return lines


def data_path(raw: Any, loc: Sequence[Any]) -> Path:
    """The error location as a path into the data: steps pydantic adds that are no key of the
    data (a union member's tag such as `function-after[…]`) are dropped; a last step not in the
    data (a missing key) is kept."""
    path: list[str | int] = []
    node = raw
    for position, step in enumerate(loc):
        if step == "[key]":  # pydantic's mark of an error in a mapping's key: the key is the place
            continue
        if (isinstance(node, Mapping) and step in node) or (
            isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        ):
            node = node[step]
        elif position == len(loc) - 1:
            node = None
        else:
            continue
        path.append(step)
    return tuple(path)


def dotted(path: Path) -> str:
    """`specs[0].source.primary_key`."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(top level)"


def line_of(lines: Mapping[Path, int], path: Path) -> int | None:
    """The line of the path, else of its nearest ancestor in the document (a missing key: the
    mapping that lacks it)."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _options(annotation: Any) -> list[Any]:
    """An annotation's alternatives: Annotated and Optional/Union unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _options(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [option for arg in get_args(annotation) for option in _options(arg)]
    return [annotation]


def _step(annotation: Any, step: str | int) -> list[Any]:
    found: list[Any] = []
    for option in _options(annotation):
        origin = get_origin(option)
        if isinstance(option, type) and issubclass(option, BaseModel) and isinstance(step, str):
            for name, field in option.model_fields.items():
                if step in (name, field.alias):
                    found.append(field.annotation)
        elif origin in (list, tuple, Sequence) and isinstance(step, int) and get_args(option):
            found.append(get_args(option)[0])
        elif origin in (dict, Mapping) and isinstance(step, str) and len(get_args(option)) == 2:
            found.append(get_args(option)[1])
    return found


def known_keys(model: type[BaseModel], path: Path) -> list[str]:
    """The keys the models at `path` (below `model`) accept, as a user writes them."""
    annotations: list[Any] = [model]
    for step in path:
        annotations = [found for annotation in annotations for found in _step(annotation, step)]
    keys: list[str] = []
    for annotation in annotations:
        for option in _options(annotation):
            if isinstance(option, type) and issubclass(option, BaseModel):
                keys += [field.alias or name for name, field in option.model_fields.items()]
    return sorted(set(keys))


def _literal_choices(model: type[BaseModel], path: Path) -> list[str]:
    annotations: list[Any] = [model]
    for step in path:
        annotations = [found for annotation in annotations for found in _step(annotation, step)]
    return [
        str(value)
        for annotation in annotations
        for option in _options(annotation)
        if get_origin(option) is Literal
        for value in get_args(option)
    ]


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    """`; did you mean 'x'?` for the candidate closest to a misspelled `name`, or nothing: the
    one suggestion every spec error gives."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def message(model: type[BaseModel], path: Path, error: Mapping[str, Any]) -> str:
    """What is wrong at `path`, with a suggestion where one can be given."""
    kind = error.get("type", "")
    if kind == "extra_forbidden" and path:
        known = known_keys(model, path[:-1])
        hint = did_you_mean(str(path[-1]), known)
        if hint:
            return f"unknown key{hint}"
        return f"unknown key (known: {', '.join(known)})" if known else "unknown key"
    if kind == "missing":
        return "required key missing"
    text = str(error.get("msg", "invalid"))
    if kind == "value_error":
        text = text.removeprefix("Value error, ")  # pydantic's prefix to a validator's own message
    if kind in _DURATION_ERRORS:
        return f"{text}; {DURATION_HINT}"
    if kind in _NUMBER_ERRORS and path and str(path[-1]).endswith("_seconds"):
        return f"{text}; {SECONDS_HINT}"
    if kind == "literal_error" and isinstance(error.get("input"), str):
        return text + did_you_mean(error["input"], _literal_choices(model, path))
    return text


def describe(
    model: type[BaseModel],
    raw: Any,
    errors: Sequence[Mapping[str, Any]],
    lines: Mapping[Path, int],
    origin: str,
) -> list[str]:
    """One `origin:line: path: message` line per error (`origin: path: …` when no line is
    known), with the spec's name when the error is inside one; in the order of their lines."""
    out: list[tuple[int, str]] = []
    for error in errors:
        path = data_path(raw, tuple(error.get("loc", ())))
        line = line_of(lines, path)
        where = f"{origin}:{line}" if line is not None else origin
        text = f"{where}: {dotted(path)}: {message(model, path, error)}{_spec_name(raw, path)}"
        out.append((line or 0, text))
    return [text for _, text in sorted(out, key=lambda item: item[0])]


def _spec_name(raw: Any, path: Path) -> str:
    if len(path) >= 2 and path[0] == "specs" and isinstance(path[1], int):
        try:
            name = raw["specs"][path[1]].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            return ""
        return f" (spec '{name}')" if isinstance(name, str) and name else ""
    return ""
