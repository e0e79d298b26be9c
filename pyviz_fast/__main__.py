"""``python -m pyviz_fast ...`` runs the ``pyviz-fast`` command line (also under torchrun)."""
import sys

from pyviz_fast.cli import main

sys.exit(main())
