"""``python -m batchor.testing``: serve the local batch server until Ctrl-C.

The same command, with the same flags, as ``batchor emulator``
(see :mod:`batchor.testing.cli`).
"""

import sys

from batchor.testing.cli import main

if __name__ == "__main__":
    sys.exit(main())
