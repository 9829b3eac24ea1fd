"""`python -m customs.credentials ...`: the credential commands without the `sealtrail` CLI."""

import sys

from customs.credentials.cli import main

sys.exit(main())
