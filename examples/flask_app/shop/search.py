"""The example's pandas transform: an embedding per product for kNN search, computed locally.

No model is downloaded and nothing reaches the network: each word of a product's name and
description is hashed to one of DIMS positions with a sign (feature hashing), the counts are
normalised, and products that share words get nearby vectors. It is deterministic — the same text
gives the same vector on any machine — which a transform must be, or `verify` reports drift no
sync can fix. A real deployment would call its embedding model here, batch by batch.

    sync-pipeline --config semantic.yaml sync --spec products_semantic --full
    sync-pipeline --config semantic.yaml search --spec products_semantic --knn embedding \\
        --vector "$(python -m shop.search 'green tea')"
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

DIMS = 16


def embeddings(texts: pd.Series) -> np.ndarray:
    """One unit vector (float32) per text, for the whole batch at once."""
    words = texts.fillna("").astype(str).str.lower().str.findall(r"\w+").explode().dropna()
    matrix = np.zeros((len(texts), DIMS), dtype="float32")
    if len(words):
        hashes = pd.util.hash_pandas_object(words, index=False).to_numpy()
        rows = texts.index.get_indexer(words.index)
        signs = np.where(hashes & (1 << 40), 1.0, -1.0).astype("float32")
        np.add.at(matrix, (rows, (hashes % DIMS).astype(int)), signs)
    matrix[~matrix.any(axis=1), 0] = 1.0  # no words: a fixed vector (cosine similarity refuses zeros)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def add_embedding(frame: pd.DataFrame) -> pd.DataFrame:
    """The spec's transform: the documents with an `embedding` field (name and description)."""
    text = frame["name"].fillna("") + " " + frame["description"].fillna("")
    return frame.assign(embedding=list(embeddings(text.reset_index(drop=True)).round(6)))


if __name__ == "__main__":  # the query vector of a text, as `search --vector` takes it
    print(json.dumps([round(float(x), 6) for x in embeddings(pd.Series([" ".join(sys.argv[1:])]))[0]]))
