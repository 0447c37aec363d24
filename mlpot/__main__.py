"""``python -m mlpot`` (also what ``torchrun -m mlpot train ...`` runs)."""

import sys

from mlpot.cli import main

sys.exit(main())
