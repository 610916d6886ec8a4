"""The pandas transforms the bench runs (issue 26, item 2): `transform: {pandas: bench.transforms:…}`."""

from __future__ import annotations

import pandas as pd


def identity(frame: pd.DataFrame) -> pd.DataFrame:
    """What the transform path costs by itself: Arrow → DataFrame → Arrow, nothing else."""
    return frame


def realistic(frame: pd.DataFrame) -> pd.DataFrame:
    """A string normalised and two computed fields, vectorised as a user would write them."""
    name = frame["name"].str.lower().str.replace(r"\s+", " ", regex=True)
    return frame.assign(
        name=name,
        name_slug=name.str.replace(" ", "-", regex=False),
        in_stock=frame["stock"] > 0,
    )
