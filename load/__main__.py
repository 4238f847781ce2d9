"""``python -m load``: see load/cli.py and load/README.md."""

import sys

from load.cli import main

sys.exit(main())
