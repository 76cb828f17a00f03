"""``python -m datakiln`` is ``kiln``."""

import sys

from .cli import main

# Guarded: a build's worker processes (multiprocessing "spawn") import this module again.
if __name__ == "__main__":
    sys.exit(main())
