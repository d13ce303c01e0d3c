"""``python -m skmeta``: the main job (see skmeta.cli)."""

import sys

from .cli import main

sys.exit(main())
