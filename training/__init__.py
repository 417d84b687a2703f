"""keras-vae training: data and flags in; a trained VAE, its pictures and numbers out.

`train(config, run_dir)` is the Python entry that `keras-vae-train` wraps. Names are imported
lazily so `keras-vae-train --help` and bad flags answer before TensorFlow loads.

Example:
>>> import training
>>> result = training.train({"data": "digits", "epochs": 5, "export": False}, "runs/digits")
"""

_EXPORTS = {
    "train": "training.trainer",
    "TrainingDiverged": "training.trainer",
    "TrainConfig": "training.config",
    "ConfigError": "training.config",
    "load_dataset": "training.data",
    "make_dataset": "training.data",
    "DataError": "training.data",
    "evaluate": "training.evaluate",
    "make_strategy": "training.distribute",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
