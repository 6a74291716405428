"""``python -m landscape_dist.cli``: the command line."""

import sys

from . import main

sys.exit(main())
