"""training.config (validation, round trip, resumption rules) and training.plots (grids, scatter
plots for vector data), without training."""

import dataclasses
import json

import numpy as np
import pytest

import keras_vae
from training import plots
from training.config import ARCHS, LIKELIHOODS, ConfigError, TrainConfig, check_resumable


def test_config_round_trips_through_json():
    config = TrainConfig(data="ring", latent_dim=3, sigma=0.1, epochs=7).validate()
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.sigma_value() == 0.1
    assert TrainConfig().sigma_value() is None  # "learned"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"epochs": 2.5}, "epochs must be an integer >= 1"),
        ({"batch_size": True}, "batch_size must be an integer"),
        ({"beta": float("nan")}, "beta must be a number >= 0"),
        ({"test_split": 1.0}, "test_split must be a fraction in (0, 1)"),
        ({"likelihood": "poisson"}, "Unknown likelihood 'poisson'"),
        ({"strategy": "tpu"}, "Unknown strategy 'tpu'"),
        ({"binarize": True, "likelihood": "gaussian"}, "--binarize"),
        ({"latnet_dim": 2}, "Unknown config keys ['latnet_dim']"),
    ],
)
def test_bad_config_values_are_refused(values, message):
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        TrainConfig.from_dict(values).validate()


def test_a_config_is_validated_once_when_made(monkeypatch):
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1"):
        TrainConfig(epochs=0)
    config = TrainConfig.from_dict({"data": "ring", "epochs": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 0

    def again(self):
        raise AssertionError("validated twice")

    # train(config) takes a TrainConfig as it is: it was validated when made.
    monkeypatch.setattr(TrainConfig, "validate", again)
    assert TrainConfig.from_dict(config) is config


def test_the_cli_choices_are_the_library_registries():
    from keras_vae import likelihoods, networks

    assert ARCHS == tuple(networks.ARCHITECTURES)
    assert LIKELIHOODS == tuple(likelihoods.LIKELIHOODS)


def test_resumption_allows_more_epochs_but_not_another_model():
    saved = TrainConfig(epochs=10)
    check_resumable(saved, TrainConfig(epochs=20, export=False, verbose=0))
    with pytest.raises(ConfigError, match="arch: 'mlp' -> 'conv'"):
        check_resumable(saved, TrainConfig(epochs=10, arch="conv"))


def test_image_grid_layout():
    images = np.zeros((7, 8, 5, 1), "float32")
    images[3] = 1.0
    grid = plots.image_grid(images, cols=4)
    scale = plots.cell_scale(8)
    assert (
        grid.size
        == plots.grid_size(2, 4, 8, 5)
        == (
            4 * 5 * scale + 5 * plots.PAD,
            2 * 8 * scale + 3 * plots.PAD,
        )
    )
    pixels = np.asarray(grid)
    # Cell 3 (row 0, column 3) is white, cell 0 black, the gaps grey.
    x0 = plots.PAD + 3 * (5 * scale + plots.PAD)
    assert pixels[plots.PAD, x0] == 255 and pixels[plots.PAD, plots.PAD] == 0
    assert pixels[0, 0] == 128
    rgb = plots.image_grid(np.ones((2, 4, 4, 3), "float32"), cols=2)
    assert rgb.mode == "RGB"
    assert tuple(np.asarray(rgb)[0, 0]) == (128, 128, 128)  # grey gaps in colour grids too


def test_vector_models_get_scatter_plots(tmp_path):
    vae = keras_vae.build_vae((2,), latent_dim=2, likelihood="gaussian", hidden_units=(8,), seed=0)
    x = np.random.default_rng(0).normal(size=(50, 2)).astype("float32")
    pictures = {
        "samples.png": plots.samples_image(vae, seed=0, reference=x),
        "reconstructions.png": plots.reconstructions_image(vae, x),
        "latent_scatter.png": plots.latent_scatter_image(vae, x),
        "latent_manifold.png": plots.latent_manifold_image(vae),
    }
    for name, image in pictures.items():
        assert image.size == (plots.SCATTER_SIZE, plots.SCATTER_SIZE), name
        # Something was drawn besides the white background and the black frame.
        colours = {tuple(c) for c in np.asarray(image).reshape(-1, 3)[::7]}
        assert len(colours - {(255, 255, 255), (0, 0, 0)}) > 0, name
        path = plots.save_png(image, str(tmp_path / name))
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("steps, expected", [(23, 23), (938, 14), (64, 32), (1, 1), (37 * 2, 2)])
def test_steps_per_execution_divides_the_epoch(steps, expected):
    from training.trainer import _steps_per_execution

    got = _steps_per_execution(steps)
    assert got == expected and steps % got == 0 and got <= 32
