"""``python -m dcvq.report SWEEP_DIR``: see :mod:`dcvq.report.cli`."""

import sys

from dcvq.report.cli import main

sys.exit(main())
