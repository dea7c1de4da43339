"""``python -m filmorph.evaluate``: :func:`filmorph.evaluate.cli.main`."""

import sys

from filmorph.evaluate.cli import main

sys.exit(main())
