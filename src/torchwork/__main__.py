"""``python -m torchwork``: the same as the ``torchwork`` command.

``python -m`` puts the current folder first on ``sys.path``; torchwork takes it off, so that a
file in the current folder is never imported by accident (a model class named in a config
file, say). Naming a class yourself (``--model mymodule:Net``, ``--trust-model-code``) still
finds it there: those imports add the current folder back for that import only.
"""

import os
import sys

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from torchwork.cli import main

sys.exit(main())
