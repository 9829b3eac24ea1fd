"""`python -m sealtrail ...`: the `sealtrail` command without its console script (a checkout,
a worktree on PYTHONPATH, the benchmarks)."""

import sys

from sealtrail.cli import main

sys.exit(main())
