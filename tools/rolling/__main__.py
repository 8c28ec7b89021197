"""`python3 -m tools.rolling`: the rolling restart under load (tools/rolling/restart.py)."""

import sys

from .restart import main

sys.exit(main())
