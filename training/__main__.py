"""`python -m training` is `keras-vae-train`."""

import sys

from training.cli import main

sys.exit(main())
