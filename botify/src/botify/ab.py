"""`python -m botify.ab`: the same as `botify ab` (see botify.cli.ab)."""

import sys

from botify.cli.ab import main

if __name__ == "__main__":
    sys.exit(main())
