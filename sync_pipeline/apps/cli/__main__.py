import sys

from sync_pipeline.apps.cli import main

sys.exit(main())
