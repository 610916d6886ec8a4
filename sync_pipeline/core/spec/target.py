"""Where a spec's documents go: the index, its settings, and how each source column becomes a field.

Part of the spec model (core/spec/model.py assembles it, as it does core/spec/sources.py).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sync_pipeline.core.mapping.dialect import misspelled_type
from sync_pipeline.core.mapping.fields import fragment_problems, settings_problems
from sync_pipeline.core.spec.sources import Strict

# ES index names: lowercase, no leading -_+, none of \ / * ? " < > | space , #
INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,254}$")

Cleanse = Literal["trim", "empty_to_null", "lowercase"]
Dynamic = Literal["strict", "false", "true"]


_NUMERIC = re.compile(r"^(double|string|scaled_long\(\s*(\d+)\s*\))$")
SCALED_LONG_MAX = 18  # beyond, a long (about 9.2 × 10^18) has no room left for an integer digit
# Elasticsearch's dense_vector similarities (each has an OpenSearch space type, search_dialect.py)
VECTOR_SIMILARITIES = ("cosine", "dot_product", "l2_norm", "max_inner_product")
MAX_VECTOR_DIMS = 4096  # indexed dense_vector's limit on Elasticsearch 8.11+, and 16000 > it on OpenSearch


class FieldSpec(Strict):
    """How one source column becomes one document field."""

    rename: str | None = None
    drop: bool = False
    type: str | None = Field(default=None, description="Elasticsearch field type; inferred when absent")
    cleanse: list[Cleanse] = Field(default_factory=list)
    numeric: str | None = Field(
        default=None,
        description="a numeric column as 'double', 'string' (exact text, keyword) or 'scaled_long(N)' "
        "(value × 10^N as a long); default: double when numeric(p, s) has p <= 15, string otherwise",
    )
    dims: int | None = Field(default=None, description="a dense_vector's number of dimensions")
    similarity: str | None = Field(
        default=None, description="a dense_vector's similarity: " + ", ".join(VECTOR_SIMILARITIES)
    )
    mapping: dict[str, Any] | None = Field(
        default=None,
        description="Elasticsearch mapping parameters merged over the inferred mapping (analyzer, "
        "multi-fields under `fields`, index, copy_to, …); null removes an inferred one",
    )

    @field_validator("mapping")
    @classmethod
    def _mapping_fragment(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        problems = fragment_problems(value, "mapping") if value is not None else []
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and (close := misspelled_type(value)):
            raise ValueError(f"unknown field type '{value}' (did you mean '{close}'?)")
        return value

    @field_validator("numeric")
    @classmethod
    def _numeric_form(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _NUMERIC.match(value.strip())
        if match is None:
            raise ValueError(f"must be 'double', 'string' or 'scaled_long(N)', not {value!r}")
        if match.group(2) is None:
            return match.group(1)
        digits = int(match.group(2))
        if digits > SCALED_LONG_MAX:
            raise ValueError(
                f"scaled_long({digits}): N must be 0 ≤ N ≤ {SCALED_LONG_MAX} (the decimal digits kept; "
                "a long holds about 18 digits in all)"
            )
        return f"scaled_long({digits})"

    @model_validator(mode="before")
    @classmethod
    def _vector_similarity_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") == "dense_vector" and data.get("similarity") is None:
            return {**data, "similarity": "cosine"}  # the similarity of most embedding models
        return data

    @model_validator(mode="after")
    def _vector_shape(self) -> FieldSpec:
        if self.type != "dense_vector":
            if self.dims is not None or self.similarity is not None:
                raise ValueError("`dims` and `similarity` are only for type: dense_vector")
            return self
        if self.dims is None or not 1 <= self.dims <= MAX_VECTOR_DIMS:
            raise ValueError(
                f"a dense_vector needs `dims:` between 1 and {MAX_VECTOR_DIMS} (the length of every vector), "
                f"not {self.dims}"
            )
        if self.similarity not in VECTOR_SIMILARITIES:
            raise ValueError(
                f"unknown similarity '{self.similarity}' for a dense_vector; "
                f"accepted: {', '.join(VECTOR_SIMILARITIES)}"
            )
        return self

    @model_validator(mode="after")
    def _dropped_has_no_mapping(self) -> FieldSpec:
        if self.drop and (self.mapping or self.type):
            raise ValueError("a dropped column has no field: remove `type`/`mapping`, or `drop`")
        return self

    @property
    def numeric_scale(self) -> int | None:
        """N of `scaled_long(N)`; None for the other forms."""
        match = _NUMERIC.match(self.numeric or "")
        return int(match.group(2)) if match and match.group(2) is not None else None


class TargetSpec(Strict):
    index: str
    shards: int = Field(default=1, ge=1)
    replicas: int = Field(default=0, ge=0)
    bulk_concurrency: int = Field(
        default=3, ge=1, le=32, description="bulk requests in flight at once during a load"
    )
    bulk_max_mb: float = Field(
        default=5.0, gt=0, le=100, description="target size of one bulk request body, in MiB"
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="index settings: analysis (analyzers, tokenizers, filters, normalizers), "
        "refresh_interval, …; shards and replicas are `shards`/`replicas`",
    )
    dynamic: Dynamic = Field(
        default="strict",
        description="fields the spec does not know: 'strict' refuses the document (a dead letter "
        "naming the field), 'false' keeps them in _source unindexed, 'true' lets Elasticsearch guess",
    )

    @field_validator("dynamic", mode="before")
    @classmethod
    def _dynamic_bool(cls, value: object) -> object:
        return str(value).lower() if isinstance(value, bool) else value

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems = settings_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @property
    def bulk_max_bytes(self) -> int:
        return int(self.bulk_max_mb * 1024 * 1024)

    @field_validator("index")
    @classmethod
    def _index_name(cls, value: str) -> str:
        if not INDEX_NAME.match(value):
            raise ValueError("must be a lowercase Elasticsearch index name (a-z 0-9 . _ -)")
        return value
