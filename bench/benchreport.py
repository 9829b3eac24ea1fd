"""What every benchmark that keeps a work directory does last: one JSON line, then clean up.

Benchmarks run as scripts (``python bench/<name>.py``), so this directory is on sys.path and
they import this module by its name.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any


def finish(result: dict[str, Any], work: Path, keep: bool) -> None:
    """Print ``result`` as one JSON line; remove ``work`` unless asked to keep it."""
    print(json.dumps(result))
    if keep:
        print(f"work directory kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
