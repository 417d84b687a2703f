"""`keras-vae-sample`: images (or vectors) from a trained model or an export, without Python.

Four modes, one per subcommand, each writing `PREFIX.npy` (the float32 array) and `PREFIX.png`
(an image grid for image models, a scatter of the first two coordinates for vector data):

- `sample`: prior samples, z from `keras_vae.rng.standard_normal` (the generator of the export's
  `sample` signature), so a seed gives the same latents from a `.keras` file and from its export.
- `decode`: latents `(N, latent_dim)` from a `.npy` file.
- `reconstruct`: inputs `(N, *data_shape)` from a `.npy` file, decoded from their posterior means.
- `interpolate`: `--steps` points on the line between the posterior means of the first two
  inputs, decoded.

The model is a `.keras` file, a training run folder (with model.keras) or a SavedModel version
folder written by `keras-vae-export` (saved_model.pb and assets.extra/keras_vae.json; its
signatures are called, no Keras code is needed). Every input is checked before anything is
written; a bad one is a one-line error and exit status 2.
"""

import argparse
import json
import math
import os
import re
import sys
import zipfile

from keras_vae.export import (
    DEFAULT_MAX_SAMPLES,
    METADATA_PATH,
)  # light: no TensorFlow before --help
from keras_vae.training.checks import parse_int
from keras_vae.training.config import MAX_SEED  # the seeds every command takes
from keras_vae.training.console import OneLineParser, one_line

PROG = "keras-vae-sample"
MAX_EXAMPLES = DEFAULT_MAX_SAMPLES  # the same cap as the served sample signature


EPILOG = """examples:
  keras-vae-sample sample runs/digits --num 64 --seed 0 --out samples
      # -> samples.npy (64, 8, 8, 1) float32 and samples.png, an 8 x 8 grid
  keras-vae-sample sample runs/digits/export/vae/1 --num 16 --seed 3 --out served
  keras-vae-sample decode runs/digits/model.keras --latents z.npy --out decoded
  keras-vae-sample reconstruct runs/digits --inputs x.npy --out recon
  keras-vae-sample interpolate runs/digits --inputs x.npy --steps 10 --out line
  # add --overwrite to replace PREFIX.npy and PREFIX.png
"""


class UsageError(ValueError):
    """A bad input: reported on one line with exit status 2."""


# ---------------------------------------------------------------------------------------------
# The command line.


def _parser():
    parser = OneLineParser(
        prog=PROG,
        description="Draw prior samples, decode latents, reconstruct or interpolate inputs with "
        "a trained keras-vae model (a .keras file or run folder) or a SavedModel written by "
        "keras-vae-export. Writes PREFIX.npy (float32) and PREFIX.png.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    modes = parser.add_subparsers(dest="mode", metavar="MODE", required=True)

    def mode(name, help_text):
        sub = modes.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "model",
            metavar="MODEL",
            help="a .keras file, a run folder with model.keras, or an export's version folder",
        )
        sub.add_argument(
            "--out", required=True, metavar="PREFIX", help="writes PREFIX.npy and PREFIX.png"
        )
        sub.add_argument("--overwrite", action="store_true", help="replace existing files")
        return sub

    sample = mode("sample", "decoded draws from the prior N(0, I)")
    sample.add_argument(
        "--num", type=parse_int, default=64, help="how many, 1 to 1024 (default: 64)"
    )
    sample.add_argument(
        "--seed", type=parse_int, default=0, help="the draw's seed, 0 to 2**31-1 (default: 0)"
    )
    decode = mode("decode", "decode latents z of shape (N, latent_dim)")
    decode.add_argument("--latents", required=True, metavar="NPY", help="a .npy of latents")
    reconstruct = mode("reconstruct", "decode the posterior means of inputs")
    reconstruct.add_argument(
        "--inputs", required=True, metavar="NPY", help="a .npy of examples (N, *data_shape)"
    )
    interpolate = mode(
        "interpolate", "decode the line between the posterior means of the first two inputs"
    )
    interpolate.add_argument(
        "--inputs", required=True, metavar="NPY", help="a .npy of examples; the first two are used"
    )
    interpolate.add_argument(
        "--steps", type=parse_int, default=10, help="points on the line, ends included, 2 to 1024"
    )
    return parser


def _count(value, flag, minimum):
    if not minimum <= value <= MAX_EXAMPLES:
        raise UsageError(f"{flag} must be between {minimum} and {MAX_EXAMPLES}; received {value}.")


def output_paths(prefix, overwrite):
    """`(PREFIX.npy, PREFIX.png)`, refused when the folder is missing or a file exists."""
    given = prefix
    for suffix in (".npy", ".png"):
        if prefix.endswith(suffix):
            prefix = prefix[: -len(suffix)]
    if os.path.basename(prefix).strip() in ("", ".", ".."):
        # "" (an unset shell variable) or "out/" would write .npy and .png, hidden files.
        raise UsageError(
            f"--out must end in a file name prefix, e.g. samples or out/samples (for "
            f"samples.npy and samples.png); received {given!r}."
        )
    folder = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        raise UsageError(
            f"--out {prefix!r}: the folder {folder!r} does not exist; create it first."
        )
    paths = (prefix + ".npy", prefix + ".png")
    for path in paths:
        if os.path.exists(path) and not overwrite:
            raise UsageError(f"{path!r} already exists; pass --overwrite to replace it.")
    return paths


def model_kind(path):
    """`("keras", file)` or `("saved_model", folder)` for a model path, or a UsageError."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            if not os.path.isfile(os.path.join(path, METADATA_PATH)):
                raise UsageError(
                    f"{path!r} is a SavedModel but not a keras-vae export (no "
                    f"{METADATA_PATH}); expected a folder written by keras-vae-export."
                )
            return "saved_model", path
        keras_file = os.path.join(path, "model.keras")
        if os.path.isfile(keras_file):
            return "keras", keras_file
        raise UsageError(
            f"{path!r} is a folder without model.keras or saved_model.pb; expected a run folder, "
            "a .keras file or an export's version folder (e.g. OUT/vae/1)."
        )
    if not os.path.exists(path):
        raise UsageError(f"no such model file or folder: {path!r}.")
    if not path.endswith(".keras"):
        raise UsageError(
            f"expected a .keras file, a run folder or an export's version folder; received {path!r}."
        )
    if not os.path.isfile(path):
        # A FIFO would block the zip reader for ever, /dev/zero feed it without end.
        raise UsageError(
            f"{path!r} is not a regular file (a FIFO, device or socket); expected a .keras file."
        )
    return "keras", path


def load_array(path, flag):
    """A numeric float `.npy` array without NaN or inf, or a UsageError."""
    import numpy as np

    if not os.path.isfile(path):
        raise UsageError(f"{flag} {path!r}: no such file.")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"{flag} {path!r} is not a readable .npy array: {first}") from e
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
        raise UsageError(
            f"{flag} {path!r} holds dtype {array.dtype}; expected floating-point values "
            "(save with x.astype('float32'))."
        )
    if array.ndim == 0 or not 1 <= len(array) <= MAX_EXAMPLES:
        n = 0 if array.ndim == 0 else len(array)
        raise UsageError(
            f"{flag} {path!r} holds {n} rows (shape {array.shape}); expected 1 to {MAX_EXAMPLES}."
        )
    if not np.isfinite(array).all():
        raise UsageError(f"{flag} {path!r} contains NaN or inf; expected finite values.")
    return array.astype("float32")


def check_latents(z, latent_dim, flag):
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise UsageError(
            f"{flag}: expected latents of shape (N, {latent_dim}); received shape {z.shape}."
        )


def check_inputs(x, data_shape, likelihood, flag, minimum=1):
    want = ", ".join(str(d) for d in data_shape)
    if tuple(x.shape[1:]) != tuple(data_shape):
        raise UsageError(
            f"{flag}: expected examples of shape (N, {want}); received shape {x.shape}."
        )
    if len(x) < minimum:
        raise UsageError(f"{flag}: expected at least {minimum} examples; received {len(x)}.")
    if likelihood == "bernoulli" and (x.min() < 0.0 or x.max() > 1.0):
        raise UsageError(
            f"{flag}: the model (likelihood='bernoulli') expects values in [0, 1]; received min "
            f"{float(x.min()):g} and max {float(x.max()):g}. Divide 0..255 images by 255."
        )


# ---------------------------------------------------------------------------------------------
# The models: a Keras VAE and an export answer the same four questions.


class KerasModel:
    """A `keras_vae.VAE` loaded from a `.keras` file."""

    def __init__(self, path):
        import keras

        import keras_vae  # noqa: F401 - registers the VAE classes for loading
        from keras_vae.training import model_size

        if not zipfile.is_zipfile(path):
            # Keras reports any file that is not a zip as "File not found", which it is not.
            raise UsageError(
                f"{path!r} is not a .keras file (not a zip archive): it is empty, truncated or "
                "another format. Save the model with model.save('model.keras')."
            )
        try:
            # Counted from the file's config before Keras builds it: a tampered latent_dim
            # would otherwise allocate gigabytes first.
            model_size.check_keras_file(path)
        except model_size.ModelTooLarge as e:
            raise UsageError(one_line(e)) from None
        try:
            self.vae = keras.models.load_model(path)
        except Exception as e:  # noqa: BLE001 - any load failure is reported the same way
            raise UsageError(f"cannot load {path!r} as a keras-vae model: {_reason(e)}") from e
        if not hasattr(self.vae, "latent_dim") or not hasattr(self.vae, "data_shape"):
            raise UsageError(
                f"{path!r} holds a {type(self.vae).__name__}; expected a keras_vae.VAE."
            )
        self.latent_dim = int(self.vae.latent_dim)
        self.data_shape = tuple(int(d) for d in self.vae.data_shape)
        self.likelihood = self.vae.likelihood_name

    def sample(self, num, seed):
        import tensorflow as tf

        from keras_vae import rng

        z = rng.standard_normal([num, self.latent_dim], tf.constant(seed, tf.int32))
        return self.decode(z.numpy())

    def decode(self, z):
        return _numpy(self.vae.decode(z))

    def encode_mean(self, x):
        return _numpy(self.vae.encode(x)[0])

    def reconstruct(self, x):
        return _numpy(self.vae.reconstruct(x))


def _reason(error):
    """A Keras load failure's reason on one line. A layer that fails inside a model is wrapped
    once per level in "<class ...> could not be deserialized properly. Please ensure that
    components ... are explicitly deserialized in the model's from_config()" (advice for the
    model's author), and then in "Error when deserializing class ... using config=...": the
    innermost error says what is wrong with the file, e.g. "Could not locate function 'system'",
    without the config dump Keras appends."""
    wrappers = ("could not be deserialized properly", "Error when deserializing")
    while any(w in str(error) for w in wrappers) and (error.__cause__ or error.__context__):
        error = error.__cause__ or error.__context__
    return re.split(r" Full (?:object )?config:", one_line(error))[0]


class ExportedModel:
    """A SavedModel version folder written by keras-vae-export, called through its signatures."""

    def __init__(self, path):
        metadata = os.path.join(path, METADATA_PATH)
        try:
            with open(metadata, encoding="utf-8") as f:
                meta = json.load(f)
            self.latent_dim = int(meta["latent_dim"])
            self.data_shape = tuple(int(d) for d in meta["data_shape"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(
                f"{metadata!r} is not keras-vae export metadata ({one_line(e)}); expected the "
                "keras_vae.json written by keras-vae-export."
            ) from e
        self.path = path
        self.likelihood = meta.get("likelihood")
        self.max_samples = int(meta.get("max_samples", MAX_EXAMPLES))
        self.max_batch = int(meta.get("max_batch", MAX_EXAMPLES))
        self._signatures = None

    @property
    def signatures(self):
        if self._signatures is None:
            import tensorflow as tf

            try:
                self._loaded = tf.saved_model.load(self.path)  # keeps the variables alive
            except (OSError, ValueError, tf.errors.OpError) as e:
                raise UsageError(f"cannot load the SavedModel {self.path!r}: {one_line(e)}") from e
            self._signatures = self._loaded.signatures
        return self._signatures

    def sample(self, num, seed):
        import tensorflow as tf

        if num > self.max_samples:
            raise UsageError(
                f"--num {num}: the export allows at most {self.max_samples} samples per draw "
                "(max_samples, fixed at export); ask for fewer."
            )
        out = self.signatures["sample"](
            num_samples=tf.constant(num, tf.int32), seed=tf.constant(seed, tf.int32)
        )
        return _numpy(out["x"])

    def _batched(self, name, key, output, array):
        import numpy as np
        import tensorflow as tf

        function = self.signatures[name]
        parts = [
            function(**{key: tf.constant(array[i : i + self.max_batch])})[output].numpy()
            for i in range(0, len(array), self.max_batch)
        ]
        return np.concatenate(parts).astype("float32")

    def decode(self, z):
        return self._batched("decode", "z", "x", z)

    def encode_mean(self, x):
        return self._batched("encode", "x", "mean", x)

    def reconstruct(self, x):
        return self._batched("serving_default", "x", "reconstruction", x)


def _numpy(tensor):
    import numpy as np

    return np.asarray(tensor, dtype="float32")


# ---------------------------------------------------------------------------------------------
# The pictures.


def _show(axes, grid, title):
    if grid.shape[-1] == 1:
        axes.imshow(grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        axes.imshow(grid, interpolation="nearest")
    axes.set_axis_off()
    axes.set_title(title, fontsize=9)


def picture(array, data_shape, title, inputs=None, one_row=False):
    """A matplotlib `Figure` of the output: an image grid for images, a scatter for vectors.

    With `inputs` (reconstructions) the inputs are drawn above the outputs; `one_row` puts the
    outputs (an interpolation's steps) in one row.

    Example:
    >>> picture(np.zeros((4, 8, 8, 1), "float32"), (8, 8, 1), "4 zeros").savefig("s.png")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from keras_vae.training import plots

    n = len(array)
    images = len(data_shape) == 3 and data_shape[-1] in (1, 3)
    if not images:
        figure = Figure(figsize=(5, 5), dpi=100)
        axes = figure.add_subplot()
        if inputs is not None:
            xy = plots.first_two_coordinates(inputs)
            axes.scatter(xy[:, 0], xy[:, 1], s=12, c="0.6", label="inputs")
        xy = plots.first_two_coordinates(array)
        axes.scatter(xy[:, 0], xy[:, 1], s=12, c="tab:blue", label="outputs")
        if inputs is not None:
            axes.legend(fontsize=8)
        one_d = math.prod(data_shape) == 1
        axes.set_xlabel("example" if one_d else "x[0]")
        axes.set_ylabel("x[0]" if one_d else "x[1]")
        axes.set_title(f"{title}, first two coordinates", fontsize=9)
        FigureCanvasAgg(figure)
        return figure
    if one_row:
        cols = n
    elif inputs is not None:
        cols = min(n, 10)
    else:
        cols = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    panels = [(array, title)]
    if inputs is not None:
        panels = [(inputs, f"{n} inputs"), (array, title)]
    cell = 0.45  # inches per image
    figure = Figure(
        figsize=(max(3.0, cols * cell + 0.4), len(panels) * (rows * cell + 0.5)), dpi=100
    )
    for i, (block, title) in enumerate(panels):
        _show(figure.add_subplot(len(panels), 1, i + 1), plots.image_grid(block, cols), title)
    FigureCanvasAgg(figure)
    return figure


def write_outputs(array, figure, paths):
    """Writes the array and the picture atomically; prints one line per file."""
    import numpy as np

    from keras_vae.training.files import atomic_write

    npy, png = paths

    def save_npy(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(npy, save_npy, suffix=".npy")
    print(f"wrote {npy}  ({array.dtype} {array.shape})", flush=True)
    atomic_write(png, lambda tmp: figure.savefig(tmp, format="png"), suffix=".png")
    print(f"wrote {png}", flush=True)


# ---------------------------------------------------------------------------------------------


def run(args):
    """Checks every input, computes the mode's array and writes it; raises UsageError."""
    if args.mode == "sample":
        _count(args.num, "--num", 1)
        if not 0 <= args.seed <= MAX_SEED:
            raise UsageError(f"--seed must be between 0 and {MAX_SEED}; received {args.seed}.")
    if args.mode == "interpolate":
        _count(args.steps, "--steps", 2)
    paths = output_paths(args.out, args.overwrite)
    kind, path = model_kind(args.model)
    array_flag = {"decode": "--latents", "reconstruct": "--inputs", "interpolate": "--inputs"}
    given = None
    if args.mode in array_flag:
        flag = array_flag[args.mode]
        given = load_array(getattr(args, flag[2:]), flag)

    from keras_vae.training import console

    console.start_tensorflow()
    model = ExportedModel(path) if kind == "saved_model" else KerasModel(path)
    inputs = None
    if args.mode == "sample":
        array = model.sample(args.num, args.seed)
        title = f"{len(array)} prior samples (seed {args.seed})"
    elif args.mode == "decode":
        check_latents(given, model.latent_dim, "--latents")
        array = model.decode(given)
        title = f"{len(array)} decoded latents"
    elif args.mode == "reconstruct":
        check_inputs(given, model.data_shape, model.likelihood, "--inputs")
        inputs = given
        array = model.reconstruct(given)
        title = "their reconstructions (decoded posterior means)"
    else:
        import numpy as np

        check_inputs(given, model.data_shape, model.likelihood, "--inputs", minimum=2)
        ends = model.encode_mean(given[:2])
        t = np.linspace(0.0, 1.0, args.steps, dtype="float32")[:, None]
        array = model.decode(((1.0 - t) * ends[0] + t * ends[1]).astype("float32"))
        title = f"from input 0 to input 1 in {args.steps} steps (posterior means)"
    figure = picture(array, model.data_shape, title, inputs, one_row=args.mode == "interpolate")
    write_outputs(array, figure, paths)


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        run(args)
    except UsageError as e:
        print(f"{PROG}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # files are written atomically: nothing is left half-written
        print(f"\n{PROG}: interrupted.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
