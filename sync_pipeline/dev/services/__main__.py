"""python -m sync_pipeline.dev.services up|down|status|env"""

import sys

from sync_pipeline.dev.services import main

if __name__ == "__main__":
    sys.exit(main())
