"""python -m sync_pipeline_devtools.services up|down|status|env"""

import sys

from sync_pipeline_devtools.services import main

if __name__ == "__main__":
    sys.exit(main())
