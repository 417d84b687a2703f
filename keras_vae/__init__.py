"""keras-vae: variational autoencoders in Keras 3 with a TFP posterior."""

from keras_vae import quiet

# In keras-vae's own commands TensorFlow starts quietly (its native start-up lines are not
# theirs to print); everywhere else this does nothing.
quiet.start_tensorflow_for_commands()

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "keras_vae needs the TensorFlow backend of Keras 3 (TFP distributions, SavedModel and "
        f"TFLite export); KERAS_BACKEND is {keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow."
    )

from keras_vae import objectives  # noqa: E402
from keras_vae.likelihoods import Bernoulli, ContinuousBernoulli, Gaussian  # noqa: E402
from keras_vae.networks import build_conv, build_mlp  # noqa: E402
from keras_vae.standardize import LatentFrame, StandardizeLatents, standardize_latents  # noqa: E402
from keras_vae.vae import VAE, build_vae  # noqa: E402
from keras_vae.warmup import KLWarmup  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "Bernoulli",
    "ContinuousBernoulli",
    "Gaussian",
    "KLWarmup",
    "LatentFrame",
    "StandardizeLatents",
    "build_conv",
    "build_mlp",
    "build_vae",
    "objectives",
    "standardize_latents",
]
