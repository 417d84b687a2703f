"""The memory a model will take, known before it is built, and a budget it must fit.

A few characters can ask for gigabytes: `--latent-dim 10000000` is 3.8 billion weights with the
default MLP (61 GB with Adam's state), and a 1 MB `.keras` file whose config says the same
allocates 15 GB when Keras builds it, before any weight is read. Both are counted here from the
settings (a training config) or from the file's `config.json`, without TensorFlow, and refused
with one line when they exceed `memory_budget()`: 4 GiB by default (`KERAS_VAE_MODEL_BUDGET_GIB`
raises it), a fixed figure so that the same settings get the same answer on every machine.

Example:
>>> parameters = network_parameters("mlp", (8, 8, 1), 2, hidden_units=(256, 128))
>>> check_training(config, (8, 8, 1))  # ConfigError when it would not fit
>>> check_keras_file("runs/digits/model.keras")  # ModelTooLarge for a tampered file
"""

import json
import math
import os
import zipfile

from keras_vae.training.checks import ConfigError

MEMORY_BUDGET_BYTES = 4 * 2**30
BUDGET_ENV = "KERAS_VAE_MODEL_BUDGET_GIB"
FLOAT_BYTES = 4
# Training keeps four float32 copies of every weight: the weight, its gradient and Adam's two
# moments.
TRAINING_COPIES = 4
# A step keeps each activation for the backward pass and its gradient: about two copies.
ACTIVATION_COPIES = 2
# A keras-vae config.json is a few kilobytes; one this big is not ours (and would be read whole).
MAX_CONFIG_BYTES = 16 << 20


class ModelTooLarge(ConfigError):
    """The model would not fit the memory budget; the message says how big and what to do."""


def memory_budget():
    """Bytes a model (and one training step) may take: `MEMORY_BUDGET_BYTES`, or `BUDGET_ENV`
    GiB."""
    raw = os.environ.get(BUDGET_ENV)
    if not raw:
        return MEMORY_BUDGET_BYTES
    try:
        gib = float(raw)
    except ValueError:
        gib = -1.0
    if not (math.isfinite(gib) and gib > 0):
        raise ConfigError(
            f"{BUDGET_ENV}={raw!r}; expected a positive number of GiB (e.g. 16). Fix or unset it."
        )
    return int(gib * 2**30)


def _gib(n):
    # Settings from a JSON file can be any integer (latent_dim 10**400): past float's range
    # the size is given as a power of ten.
    gib = n // 2**30
    return f"{n / 2**30:.3g} GiB" if gib < 10**300 else f"about 10^{len(str(gib)) - 1} GiB"


def network_parameters(
    arch, data_shape, latent_dim, hidden_units=(256, 128), filters=(32, 64), dense_units=16
):
    """The weights of `keras_vae.networks`' encoder and decoder for these settings, plus the
    learned sigma (one per data dimension) and the latent frame (two per latent dimension): an
    upper bound of the model's parameters, counted as `build_mlp` / `build_conv` lay them out."""
    dims = math.prod(data_shape)
    extra = dims + 2 * latent_dim
    if arch == "mlp":
        widths = [dims, *hidden_units, 2 * latent_dim]
        encoder = sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
        widths = [latent_dim, *reversed(hidden_units), dims]
        decoder = sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
        return encoder + decoder + extra
    height, width, channels = data_shape
    factor = 2 ** len(filters)
    low = math.ceil(height / factor) * math.ceil(width / factor)
    encoder, previous = 0, channels
    for f in filters:
        encoder += 9 * previous * f + f
        previous = f
    encoder += low * filters[-1] * dense_units + dense_units
    encoder += dense_units * 2 * latent_dim + 2 * latent_dim
    decoder = latent_dim * low * filters[-1] + low * filters[-1]
    previous = filters[-1]
    for f in reversed(filters):
        decoder += 9 * previous * f + f
        previous = f
    decoder += 9 * previous * channels + channels
    return encoder + decoder + extra


def step_activations(
    arch, data_shape, latent_dim, batch_size, k=1, hidden_units=(256, 128), filters=(32, 64)
):
    """Floats one training step holds at once in its widest layers: every example's input and
    hidden layers, and k posterior samples' latents and decoder layers (the IWAE objective
    decodes k per example)."""
    dims = math.prod(data_shape)
    if arch == "mlp":
        encoder = dims + sum(hidden_units) + 2 * latent_dim
        decoder = latent_dim + sum(hidden_units) + dims
    else:
        height, width, _ = data_shape
        maps = [math.ceil(height / 2**i) * math.ceil(width / 2**i) * f
                for i, f in enumerate(filters, start=1)]  # fmt: skip
        encoder = dims + sum(maps) + 2 * latent_dim
        decoder = latent_dim + sum(maps) + dims
    return batch_size * (encoder + k * decoder)


def check_training(config, data_shape):
    """Refuses (`ModelTooLarge`, a ConfigError) settings whose model, with Adam's state, or whose
    one training step would exceed `memory_budget()`, before anything is built."""
    parameters = network_parameters(
        config.arch, tuple(data_shape), config.latent_dim, hidden_units=config.hidden_units,
        filters=config.filters, dense_units=config.dense_units,
    )  # fmt: skip
    budget = memory_budget()
    need = parameters * FLOAT_BYTES * TRAINING_COPIES
    if need > budget:
        raise ModelTooLarge(
            f"The model would have {parameters:,} weights ({_gib(need)} to train with Adam) for "
            f"--latent-dim {config.latent_dim} and data of shape {tuple(data_shape)}; the budget "
            f"is {_gib(budget)}. Choose a smaller --latent-dim or network, or raise the budget "
            f"with {BUDGET_ENV}=<GiB> if this machine has the memory."
        )
    k = config.k if config.objective == "iwae" else 1
    floats = step_activations(
        config.arch, tuple(data_shape), config.latent_dim, config.batch_size, k,
        hidden_units=config.hidden_units, filters=config.filters,
    )  # fmt: skip
    need = floats * FLOAT_BYTES * ACTIVATION_COPIES
    if need > budget:
        raise ModelTooLarge(
            f"One training step would hold {_gib(need)} of activations (--batch-size "
            f"{config.batch_size}, --k {k}, --latent-dim {config.latent_dim}); the budget is "
            f"{_gib(budget)}. Lower --batch-size or --k, or raise the budget with "
            f"{BUDGET_ENV}=<GiB>."
        )


# ------------------------------------------------------------------------------------------------
# A .keras file, counted from its config.json.


def _int(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _shape_product(shape):
    if not isinstance(shape, list):
        return 0
    dims = [_int(d) for d in shape if d is not None]
    return math.prod(dims) if dims and all(dims) else 0


def _last_dim(layer):
    shape = (layer.get("build_config") or {}).get("input_shape")
    if isinstance(shape, list) and shape and not isinstance(shape[0], list):
        return _int(shape[-1])
    return 0


def _layers(node):
    """Every layer dict (`class_name` + `config`) in a Keras config, at any depth."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "class_name" in item and isinstance(item.get("config"), dict):
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def config_parameters(config):
    """An upper bound of the weights a Keras model config builds: Dense, Conv2D,
    Conv2DTranspose and Embedding layers counted from their settings and the input shape Keras
    records for them (`build_config`); where none is recorded, the widest width in the config
    stands in for the layer's input."""
    layers = list(_layers(config))
    widest = 1
    for layer in layers:
        c = layer["config"]
        widest = max(widest, _shape_product(c.get("batch_shape")), _int(c.get("units")),
                     _int(c.get("filters")), _shape_product(c.get("target_shape")))  # fmt: skip
    total = 0
    for layer in layers:
        name, c = layer["class_name"], layer["config"]
        if name == "Dense":
            units = _int(c.get("units"))
            total += (_last_dim(layer) or widest) * units + units
        elif name in ("Conv2D", "Conv2DTranspose", "Conv1D", "Conv3D", "Conv1DTranspose"):
            kernel = c.get("kernel_size")
            kernel = _shape_product(kernel) if isinstance(kernel, list) else _int(kernel)
            f = _int(c.get("filters"))
            total += (kernel or 1) * (_last_dim(layer) or widest) * f + f
        elif name == "Embedding":
            total += _int(c.get("input_dim")) * _int(c.get("output_dim"))
        elif name == "InputLayer":
            total += _shape_product(c.get("batch_shape"))  # a learned sigma's size at most
    return total


def _check_members(path, archive, parameters):
    """Refuses (`ModelTooLarge`) a member that declares more bytes than the model can fill:
    Keras reads the weights file whole into memory, so a few megabytes of deflated zeros
    declaring gigabytes would take gigabytes. The weights may hold float64 copies of every
    weight and of the optimizer's state (`TRAINING_COPIES`), plus HDF5's own structure."""
    weights_limit = parameters * 8 * TRAINING_COPIES + MAX_CONFIG_BYTES
    for info in archive.infolist():
        weights = info.filename.endswith((".weights.h5", ".weights.npz"))
        limit = weights_limit if weights else MAX_CONFIG_BYTES
        if info.file_size > limit:
            what = f"the {parameters:,} weights its config.json describes" if weights else "it"
            raise ModelTooLarge(
                f"{path!r}: its {info.filename} declares {info.file_size:,} bytes, more than "
                f"{what} can take ({limit:,} bytes). Not loading it: the file is tampered with "
                "or not a keras-vae model."
            )


def check_keras_file(path):
    """Refuses (`ModelTooLarge`) a `.keras` file whose model would exceed `memory_budget()`
    once built, counted from its config.json before Keras reads it. Other damage (not a zip,
    no config) is left to Keras' loader, which reports it."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise ModelTooLarge(
                    f"{path!r}: its config.json is {info.file_size:,} bytes; a keras-vae model's "
                    "is a few kilobytes. Not loading it."
                )
            config = json.loads(archive.read(info).decode("utf-8"))
            parameters = config_parameters(config)
            _check_members(path, archive, parameters)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        if isinstance(e, ModelTooLarge):
            raise
        return  # not a readable .keras: load_model says why
    except RecursionError:
        raise ModelTooLarge(
            f"{path!r}: its config.json is nested too deeply to read; not a keras-vae model."
        ) from None
    need, budget = parameters * FLOAT_BYTES, memory_budget()
    if need > budget:
        raise ModelTooLarge(
            f"{path!r} describes a model of {parameters:,} weights ({_gib(need)} once built); "
            f"the budget is {_gib(budget)}. Not loading it: a keras-vae model of that size is "
            f"unlikely; if it is yours and this machine has the memory, raise {BUDGET_ENV}."
        )
