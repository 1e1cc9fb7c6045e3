"""``python -m botify.train MODEL --logs DIR --out FILE``: see botify.offline.train."""

from __future__ import annotations

import sys

from botify.offline.train import main

if __name__ == "__main__":
    sys.exit(main())
