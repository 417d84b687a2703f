"""Installs keras-vae: the library (keras_vae), the trainer (keras_vae.training, from training/) and
the exporter (keras_vae.export, from export/)."""

from setuptools import find_packages, setup

SUBPACKAGES = ["keras_vae.training", "keras_vae.export"]

setup(
    name="keras-vae",
    version="0.1.0",
    description="Variational autoencoders in Keras 3 with a TFP posterior, for TF Serving and LiteRT.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # One installed name: the repository's top-level training/ and export/ (the layout the
    # design card asks for) install as keras_vae.training and keras_vae.export, so they never
    # shadow a user's own `training.py` or `export/`.
    packages=[*find_packages(include=["keras_vae", "keras_vae.*"]), *SUBPACKAGES],
    package_dir={name: name.split(".")[1] for name in SUBPACKAGES},
    python_requires=">=3.10",
    install_requires=[
        # The full wheel: tf-keras (needed by TFP) pins `tensorflow`, so tensorflow-cpu would put a
        # second TensorFlow over the same folder.
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        # TFP refuses to import without tf-keras; the [tf] extra brings it.
        "tensorflow-probability[tf]>=0.25,<0.26",
        "numpy",
        "scikit-learn",  # the embedded default data set (load_digits), read offline
        "pillow",
        "matplotlib",  # the run folder's pictures, drawn on the Agg backend
        "tensorboard",  # not pulled in by tensorflow 2.21; keras.callbacks.TensorBoard needs it
        "ai-edge-litert",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "ruff", "hypothesis"],
    },
    entry_points={
        "console_scripts": [
            "keras-vae-train=keras_vae.training.cli:main",
            "keras-vae-evaluate=keras_vae.training.evaluate:main",
            "keras-vae-export=keras_vae.export.cli:main",
            "keras-vae-sample=keras_vae.training.sample:main",
        ],
    },
)
