"""``python -m filmorph.train.megatron``: the engine's command line
(:func:`filmorph.train.megatron.engine.main`)."""

import sys

from filmorph.train.megatron.engine import main

if __name__ == "__main__":
    sys.exit(main())
