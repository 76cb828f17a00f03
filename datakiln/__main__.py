"""``python -m datakiln`` is ``kiln``."""

import sys

from .cli import main

sys.exit(main())
