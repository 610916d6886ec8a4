"""Vector fields: `type: dense_vector` with `dims` and `similarity`, mapped for the server at hand,
synced from a PostgreSQL `real[]` column, verified, and searched with `search --knn`.

The embedding is local and deterministic: eight floats from hashes of the title, computed in SQL.
"""

from __future__ import annotations

VECTOR = {"type": "dense_vector", "dims": 8, "similarity": "cosine"}
