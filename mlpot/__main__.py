"""``python -m mlpot`` (also what ``torchrun -m mlpot train ...`` runs): :func:`mlpot.cli.main`."""

import sys

from mlpot.cli import main

if __name__ == "__main__":
    sys.exit(main())
