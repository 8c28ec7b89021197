"""`python3 -m tools.soak`: tools/soak/soak.py's command."""

import sys

from .soak import main

sys.exit(main())
