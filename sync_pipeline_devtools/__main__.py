"""python -m sync_pipeline_devtools: sync-pipeline with local services and the demo (docs/cli.md)."""

import sys

from sync_pipeline_devtools.cli import main

if __name__ == "__main__":
    sys.exit(main())
