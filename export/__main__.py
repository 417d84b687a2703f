"""`python -m keras_vae.export` runs the `keras-vae-export` command."""

import sys

from keras_vae.export.cli import main

sys.exit(main())
