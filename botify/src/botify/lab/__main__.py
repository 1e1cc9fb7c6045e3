"""`python -m botify.lab`: the same as `botify lab`."""

import sys

from botify.cli.lab import main

sys.exit(main())
