"""`python -m botify.contest`: the same as `botify contest` (see botify.cli.contest)."""

import sys

from botify.cli.contest import main

if __name__ == "__main__":
    sys.exit(main())
