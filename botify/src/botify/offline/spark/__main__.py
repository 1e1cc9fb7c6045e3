"""`python -m botify.offline.spark {ab,train} ...`: see botify.offline.spark.cli."""

from __future__ import annotations

import sys

from botify.offline.spark.cli import main

if __name__ == "__main__":
    sys.exit(main())
