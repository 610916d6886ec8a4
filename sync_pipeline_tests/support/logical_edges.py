"""Logical capture at its edges (issue 30, items 2, 4 and 11), on the real servers: keys whose
pgoutput text is not their canonical text, a switch of capture mode with changes pending, the
visibility wait, and the repair a lost slot's advice names. Each ends in verify at zero drift."""

from __future__ import annotations

LOGICAL = "    capture: logical"
