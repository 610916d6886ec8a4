"""The vector field mapping the vector tests share."""

from __future__ import annotations

VECTOR = {"type": "dense_vector", "dims": 8, "similarity": "cosine"}
