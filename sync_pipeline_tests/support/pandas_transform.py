"""pandas transforms that specs name by module path (`transform: {pandas: "m:f"}`), as a
user's spec names its own."""

from __future__ import annotations

import numpy as np
import pandas as pd

# the transforms below, named by module path as a user's spec names its own
HERE = "sync_pipeline_tests.support.pandas_transform"


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Normalise a string and compute a field, as a user's transform would."""
    title = frame["title"].str.upper()
    return frame.assign(title=title, title_slug=title.str.lower().str.replace(" ", "-", regex=False))


def fragile(frame: pd.DataFrame) -> pd.DataFrame:
    if frame["title"].str.contains("boom").fillna(False).any():
        raise ValueError("no bombs in titles")
    return clean(frame)


def rekey(frame: pd.DataFrame) -> pd.DataFrame:
    return clean(frame).assign(id=frame["id"] + 1000)


def embed(frame: pd.DataFrame) -> pd.DataFrame:
    """A deterministic local embedding (no model, no network): 8 floats from hashes of the title,
    and a dict-valued field, both computed for the whole batch at once."""
    if frame["title"].str.contains("boom").fillna(False).any():
        raise ValueError("no bombs in titles")
    seeds = [pd.util.hash_pandas_object(frame["title"] + f":{k}", index=False).to_numpy() for k in range(8)]
    matrix = (np.stack(seeds, axis=1) % 2000).astype("float32") / 1000 - 1 if len(frame) else np.empty((0, 8))
    facts = [{"length": len(t), "words": t.split()} for t in frame["title"]]
    return frame.assign(embedding=list(matrix), facts=facts)


def lengths(frame: pd.DataFrame) -> pd.DataFrame:
    """Python lists over the batch: on the zero-row sample pandas types them float64."""
    return frame.assign(title_slug=[str(len(t)) for t in frame["title"]])


def unmapped(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(shouting=frame["title"].str.upper())
