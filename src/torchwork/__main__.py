"""``python -m torchwork``: the same as the ``torchwork`` command.

``python -m`` puts the current folder first on ``sys.path`` (and an empty ``PYTHONPATH`` entry
puts it there again); torchwork takes it off, so that a
file in the current folder is never imported by accident (a model class named in a config
file, say). Naming a class yourself (``--model mymodule:Net``, ``--trust-model-code``) still
finds it there: those imports add the current folder back for that import only.
"""

import os
import sys

_here = os.path.realpath(os.getcwd())
sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != _here]  # before any import

try:
    from torchwork.cli import exit_with, main  # after sys.path is cleaned
except KeyboardInterrupt:  # Ctrl-C before the command's own handling is in place
    print("torchwork: interrupted by SIGINT; nothing was written", file=sys.stderr)
    sys.exit(130)

exit_with(main())
