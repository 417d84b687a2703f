"""`python -m keras_vae.training` is `keras-vae-train`."""

import sys

from keras_vae.training.cli import main

sys.exit(main())
