"""The index a spec asks for: field mapping fragments, index settings, and the mapping itself.

Users shape a field with `fields.<column>.mapping:` — an Elasticsearch mapping fragment merged
over the one inferred from the column's PostgreSQL type — and the index with `target.settings`
(analysis, refresh interval, …). Both are checked here once, when the spec is read, so a typo
(`analyser`) is an error that names the field instead of an index Elasticsearch refuses later,
or worse, accepts with the parameter ignored. Whether a parameter fits the field's type, and
whether an analyzer exists on the user's cluster, only Elasticsearch can say: it does so when
the index is created (ops/target.py turns that refusal into an error naming the spec).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

Fragment = dict[str, Any]


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _names(value: Any) -> bool:
    return _text(value) or (isinstance(value, list) and bool(value) and all(_text(v) for v in value))


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda value: value in choices


def _meta(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _dynamic(value: Any) -> bool:
    return value in (True, False, "true", "false", "strict", "runtime")


# parameter → (check, what a valid value is): the parameters of Elasticsearch's field mappers
# that a synced column may carry. `type` is not among them: it is `fields.<column>.type`.
PARAMETERS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "analyzer": (_text, "an analyzer name"),
    "search_analyzer": (_text, "an analyzer name"),
    "search_quote_analyzer": (_text, "an analyzer name"),
    "normalizer": (_text, "a normalizer name"),
    "index": (_bool, "true or false"),
    "doc_values": (_bool, "true or false"),
    "store": (_bool, "true or false"),
    "norms": (_bool, "true or false"),
    "coerce": (_bool, "true or false"),
    "ignore_malformed": (_bool, "true or false"),
    "eager_global_ordinals": (_bool, "true or false"),
    "index_phrases": (_bool, "true or false"),
    "enabled": (_bool, "true or false"),
    "copy_to": (_names, "a field name or a list of them"),
    "format": (_text, "a date format such as 'strict_date_optional_time||epoch_millis'"),
    "null_value": (_scalar, "a value of the field's type"),
    "ignore_above": (_count, "a length (a whole number >= 0)"),
    "position_increment_gap": (_count, "a whole number >= 0"),
    "index_options": (_one_of("docs", "freqs", "positions", "offsets"), "docs, freqs, positions or offsets"),
    "term_vector": (
        _one_of("no", "yes", "with_positions", "with_offsets", "with_positions_offsets"),
        "no, yes, with_positions, with_offsets or with_positions_offsets",
    ),
    "similarity": (_text, "a similarity name (BM25, boolean, or one from target.settings)"),
    "scaling_factor": (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0,
        "a number > 0",
    ),
    "index_prefixes": (lambda v: isinstance(v, dict), "{min_chars: N, max_chars: M}"),
    "meta": (_meta, "a mapping of strings"),
    "dynamic": (_dynamic, "true, false, strict or runtime"),
    # `fields` (multi-fields) and `properties` (an object's sub-fields) are checked by structure
}
NESTING = ("fields", "properties")


def fragment_problems(fragment: Any, where: str, typed: bool = False) -> list[str]:
    """What is wrong with a field's mapping fragment, one line each ([] when nothing).

    `typed`: the fragment is a multi-field or a sub-property, which carries its own `type`.
    A multi-field set to null removes an inferred one (the default `keyword` twin of text).
    """
    if not isinstance(fragment, dict):
        return [f"{where}: must be a mapping of Elasticsearch mapping parameters"]
    problems = []
    for key, value in fragment.items():
        at = f"{where}.{key}"
        if key == "type":
            if not typed:
                problems.append(f"{at}: set the type with `type:` beside `mapping:`, not inside it")
            elif not _text(value):
                problems.append(f"{at}: must be an Elasticsearch field type")
        elif key in NESTING:
            if not isinstance(value, dict):
                problems.append(f"{at}: must map names to field definitions")
                continue
            for name, sub in value.items():
                if sub is None and key == "fields":
                    continue  # removes an inferred multi-field
                if not isinstance(sub, dict) or ("type" not in sub and key == "fields"):
                    problems.append(f"{at}.{name}: needs at least a `type`")
                    continue
                problems += fragment_problems(sub, f"{at}.{name}", typed=True)
        elif key in PARAMETERS:
            check, expected = PARAMETERS[key]
            if not check(value):
                problems.append(f"{at}: must be {expected}, not {value!r}")
        else:
            close = difflib.get_close_matches(key, [*PARAMETERS, *NESTING], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(
                f"{at}: unknown mapping parameter{hint}; accepted: "
                + ", ".join(sorted([*PARAMETERS, *NESTING]))
            )
    return problems


def merge_fragment(inferred: Fragment, fragment: Mapping[str, Any] | None) -> Fragment:
    """`fragment` over `inferred`, recursively for `fields` and `properties`; a null value
    removes what was inferred (`fields: {keyword: null}` drops the keyword twin)."""
    merged = dict(inferred)
    for key, value in (fragment or {}).items():
        if value is None:
            merged.pop(key, None)
        elif key in NESTING and isinstance(merged.get(key), dict):
            inner = dict(merged[key])
            for name, sub in value.items():
                if sub is None:
                    inner.pop(name, None)
                else:
                    inner[name] = merge_fragment(inner.get(name, {}), sub) if name in inner else dict(sub)
            merged[key] = inner
        else:
            merged[key] = value
    if merged.get("fields") == {}:
        del merged["fields"]
    return merged


# --- index settings ------------------------------------------------------------------------------

ANALYSIS_PARTS = ("analyzer", "tokenizer", "filter", "char_filter", "normalizer")
OWN_SETTINGS = {"number_of_shards": "target.shards", "number_of_replicas": "target.replicas"}
INTERVAL = re.compile(r"^(-1|\d+(nanos|micros|ms|s|m|h|d)?)$")


def settings_problems(settings: Any) -> list[str]:
    """What is wrong with `target.settings`, one line each; the settings Elasticsearch accepts
    are many and version-dependent, so beyond the few checked here it is the judge."""
    if not isinstance(settings, dict):
        return ["must be a mapping of index settings"]
    problems = []
    for raw_key, value in settings.items():
        key = raw_key.removeprefix("index.")
        if key in OWN_SETTINGS:
            problems.append(f"{raw_key}: set it as {OWN_SETTINGS[key]}")
        elif key == "refresh_interval" and not (isinstance(value, str) and INTERVAL.match(value)):
            problems.append(f"{raw_key}: must be a time such as '1s', '30s' or '-1', not {value!r}")
        elif key == "analysis":
            problems += _analysis_problems(value, raw_key)
    return problems


def _analysis_problems(analysis: Any, where: str) -> list[str]:
    if not isinstance(analysis, dict):
        return [f"{where}: must be a mapping with {', '.join(ANALYSIS_PARTS)}"]
    problems = []
    for part, defined in analysis.items():
        if part not in ANALYSIS_PARTS:
            problems.append(f"{where}.{part}: unknown; accepted: {', '.join(ANALYSIS_PARTS)}")
        elif not isinstance(defined, dict) or not all(isinstance(d, dict) for d in defined.values()):
            problems.append(f"{where}.{part}: must map names to definitions ({{type: …, …}})")
    return problems


def refresh_interval(settings: Mapping[str, Any]) -> str | None:
    """The spec's refresh interval, if it sets one (a load restores it after loading)."""
    value = settings.get("refresh_interval", settings.get("index.refresh_interval"))
    return str(value) if value is not None else None
