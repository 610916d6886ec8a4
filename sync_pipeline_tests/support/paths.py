"""Where the tests find the checkout."""

from pathlib import Path

# sync_pipeline_tests/<kind>/<module>.py: the checkout is two folders up
ROOT = Path(__file__).resolve().parents[2]
