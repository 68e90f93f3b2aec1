"""`python -m fer_hf.cli`: the same as the `fer-hf` console script."""

import sys

from . import main

sys.exit(main())
