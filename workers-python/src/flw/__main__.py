"""``python -m flw SCRIPT``: the worker entry point the supervisor starts."""

import sys

from .worker._entry import main

if __name__ == "__main__":
    sys.exit(main())
