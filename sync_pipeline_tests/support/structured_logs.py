"""The JSON objects of a SYNC_LOG_FORMAT=json log stream."""

from __future__ import annotations

import json


def objects(stderr: str) -> list[dict]:
    """Every line of the log stream, each of which must be a JSON object."""
    lines = stderr.splitlines()
    assert lines, "nothing was logged"
    parsed = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    assert all(isinstance(p, dict) for p in parsed), stderr
    return parsed
