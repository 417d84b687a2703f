"""`python -m export` runs the `keras-vae-export` command."""

import sys

from export.cli import main

sys.exit(main())
