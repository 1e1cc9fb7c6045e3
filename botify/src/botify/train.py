"""`python -m botify.train`: the same as `botify train` (see botify.cli.train)."""

import sys

from botify.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
