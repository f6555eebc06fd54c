"""``python -m sparselinear`` runs the command line (see [`sparselinear.cli`][sparselinear.cli])."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
