"""``python -m torchwork``: the same as the ``torchwork`` command."""

import sys

from torchwork.cli import main

sys.exit(main())
