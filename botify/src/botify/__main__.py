"""`python -m botify ...`: the same as the `botify` console script (see botify.cli)."""

import sys

from botify.cli.main import main

sys.exit(main())
