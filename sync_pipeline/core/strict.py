"""The base of the spec models: an unknown key is refused (a typo is an error, never a silent
default), and a validated spec is frozen (everything downstream may trust it as it is)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
