"""`keras-vae-export`: a trained model (or a training run folder) in, serving artefacts out."""

import argparse
import os
import sys
import zipfile

from keras_vae.export import (
    DEFAULT_IW_SAMPLES,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_SAMPLES,
    QUANTIZATION_NAMES,
)

EXAMPLE = """\
example:
  keras-vae-export runs/digits --out runs/digits/export --tflite --quantize float32 int8 \\
      --representative-data x_train.npy
  # -> runs/digits/export/vae/1/ (SavedModel for TF Serving)
  #    runs/digits/export/tflite/vae-v1-float32.tflite (+ .json), vae-v1-int8.tflite (+ .json)
"""


def _parser():
    from keras_vae.training.checks import parse_int
    from keras_vae.training.console import OneLineParser

    parser = OneLineParser(
        prog="keras-vae-export",
        description=(
            "Export a trained keras-vae model as a SavedModel for TF Serving "
            "(OUT/<name>/<version>/) and optionally as TFLite for LiteRT (OUT/tflite/)."
        ),
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", metavar="MODEL_OR_RUN_DIR", help="a .keras file, or a run folder with model.keras"
    )
    parser.add_argument("--out", required=True, help="output folder (TF Serving's base path)")
    parser.add_argument("--name", default="vae", help="model name (default: vae)")
    parser.add_argument(
        "--version", type=parse_int, default=1, help="version folder, >= 1 (default: 1)"
    )
    parser.add_argument("--tflite", action="store_true", help="also write TFLite models")
    parser.add_argument(
        "--quantize",
        nargs="+",
        choices=QUANTIZATION_NAMES,
        metavar="Q",
        help=f"TFLite variants, any of {', '.join(QUANTIZATION_NAMES)} (default: float32; "
        "implies --tflite)",
    )
    parser.add_argument(
        "--representative-data",
        metavar="NPY",
        help="a .npy of float examples (N, *data_shape) scaled as in training ([0, 1] for a "
        "Bernoulli model; a .npz with one array or an 'x' array also works): the int8 sidecar "
        "reports the decode error on them",
    )
    parser.add_argument(
        "--max-samples",
        type=parse_int,
        default=DEFAULT_MAX_SAMPLES,
        help=f"cap on num_samples per sample request (default: {DEFAULT_MAX_SAMPLES})",
    )
    parser.add_argument(
        "--max-batch",
        type=parse_int,
        default=DEFAULT_MAX_BATCH,
        help="cap on examples per serving_default/encode/decode/log_likelihood request "
        f"(default: {DEFAULT_MAX_BATCH})",
    )
    parser.add_argument(
        "--iw-samples",
        type=parse_int,
        default=DEFAULT_IW_SAMPLES,
        help=f"importance samples per example in log_likelihood (default: {DEFAULT_IW_SAMPLES})",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing version and TFLite files"
    )
    return parser


def model_path(model_or_run_dir):
    """The `.keras` file named by `model_or_run_dir` (a file, or a run folder with model.keras)."""
    if os.path.isdir(model_or_run_dir):
        path = os.path.join(model_or_run_dir, "model.keras")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{model_or_run_dir!r} is a folder without model.keras; pass a training run "
                "folder (it holds model.keras and config.json) or a .keras file."
            )
        return path
    if not os.path.isfile(model_or_run_dir):
        raise FileNotFoundError(f"No such model file or run folder: {model_or_run_dir!r}.")
    if not model_or_run_dir.endswith(".keras"):
        raise ValueError(
            f"Expected a .keras file or a run folder; received {model_or_run_dir!r}. Save the "
            "model with model.save('model.keras')."
        )
    return model_or_run_dir


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return _export(args)
    except KeyboardInterrupt:
        # Anything staged was removed on the way out, and a commit that had begun was finished
        # first: no version is left half-written, whenever Ctrl-C came.
        print(
            "keras-vae-export: interrupted; no version was left half-written. Rerun the same "
            "command to export.",
            file=sys.stderr,
        )
        return 130


def _export(args):
    # Imported after parsing: --help and flag errors answer without loading TensorFlow.
    from keras_vae import export
    from keras_vae.training import console

    try:
        path = _check_flags(args)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        print(f"keras-vae-export: error: {console.one_line(e)}", file=sys.stderr)
        return 2
    console.start_tensorflow()
    import tensorflow as tf

    import keras_vae  # noqa: F401  (registers the VAE classes for load_model)

    try:
        model, representative = _load(args, path)
        print(f"Exporting to {args.out}", flush=True)
        paths = export.export_all(
            model,
            args.out,
            name=args.name,
            version=args.version,
            representative_data=representative,
            quantizations=args.quantize or (["float32"] if args.tflite else []),
            overwrite=args.overwrite,
            max_samples=args.max_samples,
            iw_samples=args.iw_samples,
            max_batch=args.max_batch,
        )
    except (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError, TypeError) as e:
        print(f"keras-vae-export: error: {console.one_line(e)}", file=sys.stderr)
        return 2
    except (OSError, tf.errors.OpError) as e:
        # Storage faults (unwritable folder, full disk) and another export holding the folder:
        # earlier versions are untouched.
        print(f"keras-vae-export: error: {console.one_line(e)}", file=sys.stderr)
        return 1
    for kind, p in paths.items():
        print(f"{kind}: {p}")
    return 0


def _check_flags(args):
    """The model's path once the flags are checked, before TensorFlow starts: a rejected export
    leaves nothing behind, and its retry needs no --overwrite."""
    from keras_vae import export

    if not args.out.strip():  # an unset shell variable: it would mean the current folder
        raise ValueError(
            f"--out must name a folder (TF Serving's model base path); received {args.out!r}."
        )
    export.check_version(args.version, "--version")
    export.check_count(args.max_samples, "--max-samples")
    export.check_count(args.max_batch, "--max-batch")
    export.check_count(args.iw_samples, "--iw-samples")
    path = model_path(args.model)
    export.check_out_dir(args.out, "--out")
    return path


def _load(args, path):
    """`(model, representative data or None)`, the files checked before the model is loaded and
    the data against the model before anything is written."""
    import keras

    from keras_vae import export

    target = os.path.join(args.out, args.name, str(args.version))
    if os.path.exists(target) and not args.overwrite and not _may_be_a_rerun(target):
        # Checked again by the export; here it answers before the model is loaded.
        raise FileExistsError(
            f"{target!r} already exists. Pass --overwrite to replace it, or choose a new --version."
        )
    representative = None
    label = "--representative-data"
    if args.representative_data:
        representative = export.load_representative_data(args.representative_data, label)
    print(f"Loading {path}", flush=True)
    try:
        model = keras.models.load_model(path)
    except (OSError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"cannot load {path!r} as a Keras model: {e}") from e
    if representative is not None:
        representative = export.check_representative_data(
            representative, model.data_shape, model.likelihood_name, label
        )
    return model, representative


def _may_be_a_rerun(version_dir):
    """Whether the existing version was written by keras-vae-export with a fingerprint: the same
    command may then have written it (a rerun after a kill or a success is not refused)."""
    from keras_vae.export.saved_model import read_metadata

    try:
        return bool(read_metadata(version_dir).get("export_fingerprint"))
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
