"""``python -m detsched``: the same as the ``detsched`` command."""

import sys

from detsched.cli import main

sys.exit(main())
