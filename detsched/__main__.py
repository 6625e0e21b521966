"""``python -m detsched``: the same as the ``detsched`` command."""

import sys

from .cli import main

sys.exit(main())
