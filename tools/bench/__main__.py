"""`python3 -m tools.bench`: the benchmark runner (tools/bench/bench.py)."""

import sys

from .bench import main

sys.exit(main())
