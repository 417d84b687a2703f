"""training.config (validation, round trip, resumption rules) and training.plots (grids, scatter
plots for vector data, loss curves, KL per dimension: titles, axis names, sizes), without
training."""

import dataclasses
import json

import matplotlib.text
import numpy as np
import pytest
from PIL import Image

import keras_vae
from keras_vae.training import plots
from keras_vae.training.config import ARCHS, LIKELIHOODS, ConfigError, TrainConfig, check_resumable


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
    from keras_vae.training import config as training_config

    assert training_config.OBJECTIVES == keras_vae.vae.OBJECTIVES


def test_resumption_allows_more_epochs_but_not_another_model():
    saved = TrainConfig(epochs=10)
    check_resumable(saved, TrainConfig(epochs=20, export=False, verbose=0))
    with pytest.raises(ConfigError, match="arch: 'mlp' -> 'conv'"):
        check_resumable(saved, TrainConfig(epochs=10, arch="conv"))


def test_image_grid_layout():
    images = np.zeros((7, 8, 5, 1), "float32")
    images[3] = 1.0
    mosaic = plots.image_grid(images, cols=4)
    pad = plots.PAD
    assert mosaic.shape == (2 * 8 + 3 * pad, 4 * 5 + 5 * pad, 1)
    # Cell 3 (row 0, column 3) is white, cell 0 black, the gaps and the missing 8th cell grey.
    x0 = pad + 3 * (5 + pad)
    assert mosaic[pad, x0, 0] == 1.0 and mosaic[pad, pad, 0] == 0.0
    assert mosaic[0, 0, 0] == plots.GAP_GREY and mosaic[-pad - 1, -pad - 1, 0] == plots.GAP_GREY
    rgb = plots.image_grid(np.ones((2, 4, 4, 3), "float32"), cols=2)
    assert rgb.shape[-1] == 3 and tuple(rgb[0, 0]) == (plots.GAP_GREY,) * 3


def _texts(figure):
    """Every piece of text a figure will draw: titles, axis names, tick labels, legends."""
    figure.canvas.draw()
    return [t.get_text() for t in figure.findobj(matplotlib.text.Text) if t.get_text()]


def _png_size(path):
    with Image.open(path) as image:
        image.load()
        return image.size


def test_image_grids_have_titles_row_labels_and_their_size(tmp_path):
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(8,), seed=0)
    x = np.random.default_rng(0).uniform(size=(12, 8, 8, 1)).astype("float32")
    figure = plots.samples_figure(vae, seed=0, epoch=12)
    ax = figure.axes[0]
    assert ax.get_title() == "prior samples after epoch 12"
    (image,) = ax.get_images()
    assert image.get_cmap().name == "gray" and image.get_clim() == (0.0, 1.0)
    grid = plots.SAMPLE_GRID
    path = plots.save_figure(figure, str(tmp_path / "samples.png"))
    assert _png_size(path) == plots.grid_size(grid, grid, 8, 8)
    assert plots.samples_figure(vae, seed=0).axes[0].get_title() == "prior samples, final"

    figure = plots.reconstructions_figure(vae, x, final_epoch=4)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["input", "reconstruction"]
    assert "final (epoch 4)" in ax.get_title()
    path = plots.save_figure(figure, str(tmp_path / "reconstructions.png"))
    assert _png_size(path) == plots.grid_size(2, plots.RECONSTRUCTIONS, 8, 8)

    figure = plots.latent_manifold_figure(vae)
    ax = figure.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z1", "z2")
    ticks = [float(t.get_text().replace("\N{MINUS SIGN}", "-")) for t in ax.get_xticklabels()]
    assert len(ticks) == plots.MANIFOLD_GRID and ticks[0] == -2.5 and ticks[-1] == 2.5
    path = plots.save_figure(figure, str(tmp_path / "latent_manifold.png"))
    grid = plots.MANIFOLD_GRID
    assert _png_size(path) == plots.grid_size(grid, grid, 8, 8)

    colour = keras_vae.build_vae((6, 6, 3), latent_dim=2, hidden_units=(8,), seed=0)
    (image,) = plots.samples_figure(colour, seed=0).axes[0].get_images()
    assert image.get_array().shape[-1] == 3  # RGB, no colour map


def test_latent_scatter_names_classes_or_labels():
    vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(8,), seed=0)
    x = np.random.default_rng(0).uniform(size=(40, 8, 8, 1)).astype("float32")
    labels = np.arange(40) % 2
    figure = plots.latent_scatter_figure(vae, x, labels, classes=["china", "flower"])
    ax = figure.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z1", "z2")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["china", "flower"]
    assert figure.canvas.get_width_height() == (
        plots.SCATTER_SIZE + plots.LEGEND_WIDTH,
        plots.SCATTER_SIZE,
    )
    figure = plots.latent_scatter_figure(vae, x, labels)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["0", "1"]
    # Many distinct labels: a colour bar, not a legend of 40 entries.
    figure = plots.latent_scatter_figure(vae, x, np.arange(40))
    assert figure.axes[0].get_legend() is None and len(figure.axes) == 2
    assert figure.axes[1].get_ylabel() == "label"


def test_vector_models_get_scatter_plots(tmp_path):
    vae = keras_vae.build_vae((2,), latent_dim=2, likelihood="gaussian", hidden_units=(8,), seed=0)
    x = np.random.default_rng(0).normal(size=(50, 2)).astype("float32")
    pictures = {
        "samples.png": plots.samples_figure(vae, seed=0, reference=x, epoch=3),
        "reconstructions.png": plots.reconstructions_figure(vae, x),
        "latent_scatter.png": plots.latent_scatter_figure(vae, x),
        "latent_manifold.png": plots.latent_manifold_figure(vae),
    }
    names = {"latent_scatter.png": ("z1", "z2")}
    legends = {
        "samples.png": ["data", "prior samples"],
        "reconstructions.png": ["input to reconstruction", "input", "reconstruction"],
    }
    for name, figure in pictures.items():
        ax = figure.axes[0]
        assert (ax.get_xlabel(), ax.get_ylabel()) == names.get(name, ("x1", "x2")), name
        assert ax.get_title() and ax.get_xticklabels(), name
        if name in legends:
            assert [t.get_text() for t in ax.get_legend().get_texts()] == legends[name]
        assert ax.collections, name  # something was drawn
        path = plots.save_figure(figure, str(tmp_path / name))
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert _png_size(path) == (plots.SCATTER_SIZE, plots.SCATTER_SIZE), name
        assert not figure.axes  # released once saved
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_loss_curve_and_kl_per_dimension(tmp_path):
    rows = [
        {"epoch": str(e), "loss": str(30 - e), "reconstruction_loss": str(28 - e),
         "kl_loss": "2", "val_loss": str(31 - e), "val_reconstruction_loss": str(29 - e),
         "val_kl_loss": "2"}
        for e in range(4)
    ]  # fmt: skip
    figure = plots.loss_curve_figure(rows)
    left, right = figure.axes
    assert figure.get_suptitle() == "loss per epoch, after epoch 3"
    for ax in (left, right):
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "nats per example")
    assert [t.get_text() for t in left.get_legend().get_texts()] == [
        "training negative ELBO", "training reconstruction",
        "held-out negative ELBO", "held-out reconstruction",
    ]  # fmt: skip
    # The negative ELBO is reconstruction + KL, epoch by epoch.
    assert list(left.lines[0].get_ydata()) == [30, 29, 28, 27]
    assert list(left.lines[0].get_xdata()) == [0, 1, 2, 3]
    assert [t.get_text() for t in right.get_legend().get_texts()] == [
        "training KL", "held-out KL"
    ]  # fmt: skip
    path = plots.save_figure(figure, str(tmp_path / "loss_curve.png"))
    assert _png_size(path) == (1000, 420)
    # Without held-out columns only the training curves are drawn.
    no_val = [{k: v for k, v in r.items() if not k.startswith("val_")} for r in rows]
    assert len(plots.loss_curve_figure(no_val).axes[0].lines) == 2

    vae = keras_vae.build_vae((8, 8, 1), latent_dim=3, hidden_units=(8,), seed=0)
    x = np.random.default_rng(0).uniform(size=(20, 8, 8, 1)).astype("float32")
    kl = plots.kl_per_dimension(vae, x)
    posterior = vae.posterior(x)
    total = keras_vae.objectives.kl_to_standard_normal(posterior)
    assert kl.shape == (3,) and kl.sum() == pytest.approx(float(np.mean(total)), rel=1e-4)
    figure = plots.kl_per_dimension_figure(vae, x, final_epoch=3)
    ax = figure.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("latent dimension", "mean KL, nats per example")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["z1", "z2", "z3"]
    assert [p.get_height() for p in ax.patches] == pytest.approx(list(kl))
    assert "final (epoch 3)" in ax.get_title()
    assert "z1" in _texts(figure)
    path = plots.save_figure(figure, str(tmp_path / "kl_per_dimension.png"))
    assert _png_size(path) == (600, 420)


def test_saved_figures_are_freed(tmp_path):
    """Nothing (no pyplot registry, no cache) keeps a saved figure alive: an epoch's pictures
    do not pile up over a long run."""
    import gc
    import weakref

    rows = [{"epoch": str(e), "reconstruction_loss": "1", "kl_loss": "1"} for e in range(3)]
    figure = plots.loss_curve_figure(rows)
    alive = weakref.ref(figure)
    plots.save_figure(figure, str(tmp_path / "loss_curve.png"))
    assert not figure.axes  # cleared once saved
    del figure
    gc.collect()
    assert alive() is None


def test_the_run_folder_pictures_and_their_sizes(tmp_path):
    """EpochSamples' per-epoch files and the chief's final pictures, from a history.csv and an
    untrained model: every PNG is there, at the size its function gives."""
    import types

    from keras_vae.training import callbacks, outputs

    vae = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(8,), seed=0)
    x = np.random.default_rng(0).uniform(size=(30, 8, 8, 1)).astype("float32")
    (tmp_path / "history.csv").write_text(
        "epoch,kl_loss,reconstruction_loss,val_kl_loss,val_reconstruction_loss\n"
        "0,2,30,2,31\n1,3,25,3,27\n"
    )
    hook = callbacks.EpochSamples(str(tmp_path / "samples"), seed=0)
    hook.set_model(vae)
    hook.on_epoch_end(1)
    grid = plots.SAMPLE_GRID
    assert _png_size(tmp_path / "samples" / "epoch_001.png") == plots.grid_size(grid, grid, 8, 8)
    assert _png_size(tmp_path / "loss_curve.png") == (1000, 420)

    data = types.SimpleNamespace(
        reference=None, x_eval=x,
        dataset=types.SimpleNamespace(y_test=np.arange(30) % 3, info={"classes": list("abc")}),
    )  # fmt: skip
    files = outputs._write_pictures(
        vae, TrainConfig(latent_dim=2), data, str(tmp_path), str(tmp_path / "history.csv")
    )
    manifold = plots.MANIFOLD_GRID
    assert {name: _png_size(path) for name, path in files.items()} == {
        "samples.png": plots.grid_size(grid, grid, 8, 8),
        "reconstructions.png": plots.grid_size(2, plots.RECONSTRUCTIONS, 8, 8),
        "kl_per_dimension.png": (600, 420),
        "latent_scatter.png": (plots.SCATTER_SIZE + plots.LEGEND_WIDTH, plots.SCATTER_SIZE),
        "latent_manifold.png": plots.grid_size(manifold, manifold, 8, 8),
        "loss_curve.png": (1000, 420),
    }
    assert not [p for p in tmp_path.rglob(".tmp-*")]


@pytest.mark.parametrize("steps, expected", [(23, 23), (938, 14), (64, 32), (1, 1), (37 * 2, 2)])
def test_steps_per_execution_divides_the_epoch(steps, expected):
    from keras_vae.training.trainer import _steps_per_execution

    got = _steps_per_execution(steps)
    assert got == expected and steps % got == 0 and got <= 32
