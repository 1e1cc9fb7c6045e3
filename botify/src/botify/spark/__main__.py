"""`python -m botify.spark {ab,train} ...`: see botify.cli.spark."""

import sys

from botify.cli.spark import main

if __name__ == "__main__":
    sys.exit(main())
