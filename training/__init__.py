"""keras-vae training: data and flags in; a trained VAE, its pictures and numbers out.

`train(config, run_dir)` is the Python entry that `keras-vae-train` wraps. Installed as
`keras_vae.training` (the folder is the repository's top-level training/). Names are imported
lazily: `keras-vae-train --help` and bad flags answer before the data and trainer modules load.

Example:
>>> from keras_vae import training
>>> result = training.train({"data": "digits", "epochs": 5, "export": False}, "runs/digits")
"""

_EXPORTS = {
    "train": "keras_vae.training.trainer",
    "TrainingDiverged": "keras_vae.training.trainer",
    "TrainConfig": "keras_vae.training.config",
    "ConfigError": "keras_vae.training.config",
    "load_dataset": "keras_vae.training.data",
    "make_dataset": "keras_vae.training.data",
    "DataError": "keras_vae.training.data",
    "evaluate": "keras_vae.training.evaluate",
    "make_strategy": "keras_vae.training.distribute",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'keras_vae.training' has no attribute {name!r}")
