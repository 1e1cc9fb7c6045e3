"""`python -m botify.evaluate`: the same as `botify evaluate` (see botify.cli.evaluate)."""

import sys

from botify.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
