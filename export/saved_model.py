"""A trained VAE as a SavedModel in TF Serving's layout, `BASE_DIR/<name>/<version>/`.

Five signatures, each with named inputs and outputs, explicit dtypes, and an open batch
dimension:

| signature         | inputs                                         | outputs                       |
|-------------------|------------------------------------------------|-------------------------------|
| `serving_default` | `x` float32 `[B, *data_shape]`                 | `reconstruction` (same shape) |
| `encode`          | `x`                                            | `mean`, `scale` `[B, latent]` |
| `decode`          | `z` float32 `[B, latent]`                      | `x` `[B, *data_shape]`        |
| `sample`          | `num_samples` int32 `[]`, `seed` int32 `[]`    | `x`, `z`                      |
| `log_likelihood`  | `x`                                            | `log_likelihood` `[B]` (nats) |

`sample` is capped at `max_samples` per request, and the signatures that take a batch
(`serving_default`, `encode`, `decode`, `log_likelihood`) at `max_batch` examples, so one request
cannot make a server allocate unbounded memory or time; `log_likelihood` decodes its
`B * iw_samples` latents in chunks within `keras_vae.estimators.DEFAULT_MEMORY_BUDGET` bytes; `seed >= 0` gives a repeatable draw (the same on a server and in the TFLite
model, see `keras_vae.rng`), `seed < 0` a fresh one per call. `log_likelihood` is the importance
weighted estimate with `iw_samples` posterior samples and a fixed seed, so a request's scores are
repeatable.

The SavedModel is written to a temporary folder beside the target and renamed into place: TF
Serving (which loads the highest numbered folder) never sees a half-written version. With its
TFLite files it is published as one (`keras_vae.export.publish`), one export per folder at a time.
"""

import ctypes
import errno
import json
import math
import os
import re
import shutil
import socket
import uuid

import keras
import tensorflow as tf

import keras_vae
from keras_vae import estimators, rng
from keras_vae.export import (
    DEFAULT_IW_SAMPLES,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_SAMPLES,
    METADATA_PATH,
    check_count,
    check_version,
    publish,
)

# log_likelihood draws its importance samples from this fixed seed: the same request gives the
# same scores, which is what an anomaly threshold needs.
LOG_LIKELIHOOD_SEED = 0
SIGNATURES = ("serving_default", "encode", "decode", "sample", "log_likelihood")
# Temporary folders start with a dot and are not numbers: TF Serving ignores them. They name their
# host and process, so a later export can remove those left by a killed one.
_TEMP_PREFIX = ".tmp-"
_TEMP_PATTERN = re.compile(r"^\.tmp-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{32}-")


def check_model(model):
    """Raises a clear error unless `model` is a built `keras_vae.VAE`."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a trained keras_vae.VAE; received {type(model).__name__}. Load one with "
            "keras.models.load_model('model.keras')."
        )
    if not model.built or not model.weights:
        raise ValueError(
            f"The model {model.name!r} is not built (it has no weights yet), so there is nothing "
            "to export. Build it with keras_vae.build_vae(...), train it, or load a saved one."
        )
    if not isinstance(model, keras_vae.VAE):
        raise TypeError(
            f"Expected a keras_vae.VAE; received a {type(model).__name__}. The export needs the "
            "VAE's encode/decode/log_likelihood methods."
        )


def check_name(name):
    if (
        not isinstance(name, str)
        or not name
        or name.startswith(".")
        or any(sep in name for sep in ("/", "\\", os.sep))
    ):
        raise ValueError(
            "name must be a non-empty folder name without path separators and not starting "
            f"with '.'; received name={name!r}."
        )
    return name


def metadata(model, name, version, max_samples, iw_samples, max_batch):
    """What a client needs to know about the export, also written beside the SavedModel."""
    return {
        "format": "keras_vae.export/1",
        "name": name,
        "version": version,
        "keras_vae_version": keras_vae.__version__,
        "latent_dim": int(model.latent_dim),
        "data_shape": [int(d) for d in model.data_shape],
        "likelihood": model.likelihood_name,
        "max_samples": max_samples,
        "max_batch": max_batch,
        "iw_samples": iw_samples,
        "memory_budget_bytes": estimators.DEFAULT_MEMORY_BUDGET,
        "log_likelihood_seed": LOG_LIKELIHOOD_SEED,
        "signatures": list(SIGNATURES),
        "rng": "keras_vae.rng.standard_normal (lowbias32 counter hash + Box-Muller)",
    }


def _checked(tensor, name, spec, max_batch):
    """`tensor` after a run-time check of its shape against `spec` (batch dimension free).

    A loaded signature does not check shapes, and TF Serving feeds whatever a request holds: an
    image of the wrong size could otherwise pass through a convolutional encoder unnoticed.
    Everything here is computed from the fed tensor at run time: `tf.rank`, or the length of
    `tf.shape`, would be folded to the signature's static rank, and Grappler may delete the
    final reshape as redundant for the same reason, so the data reaches the model through an
    identity that waits for the check.
    """
    want = [int(d) for d in spec.shape[1:]]
    got = tf.shape(tensor)
    # Padded so that a tensor of another rank compares without a broadcasting error of its own.
    padded = tf.concat([got[1:], tf.fill([len(want)], -1)], 0)[: len(want)]
    batch = tf.reduce_prod(got[:1])  # 1 for a scalar, whose got[0] would not exist
    # The rank counted from the shape's values (all >= 0), which no optimizer can know.
    rank = tf.reduce_sum(tf.cast(tf.greater_equal(got, 0), tf.int32))
    ok = tf.reduce_all(
        tf.stack(
            [
                tf.equal(rank, len(want) + 1),
                tf.reduce_all(tf.equal(padded, tf.constant(want, tf.int32))),
                tf.equal(tf.size(tensor, out_type=tf.int32), batch * math.prod(want)),
            ]
        )
    )
    dims = ", ".join(map(str, want))
    check = tf.debugging.Assert(
        ok, [f"{name} must have shape (batch, {dims}) and dtype float32; received shape", got]
    )
    capped = tf.debugging.Assert(
        batch <= max_batch,
        [
            f"{name}: at most {max_batch} examples per request (max_batch, fixed at export); "
            "split the request. Received batch",
            batch,
        ],
    )
    with tf.control_dependencies([check, capped]):
        checked = tf.identity(tensor)
    # The converter drops assertions, so in TFLite this reshape is the check: its target has
    # one row more than the tensor holds unless the shape is right and the batch within
    # max_batch, so LiteRT refuses the request (a RuntimeError from RESHAPE) before any
    # activation is allocated, instead of reading a [B, 3] or [B, 2, 1] tensor as [3B/2, 2] or
    # [B, 2], or decoding a million latents until the process is killed. In TF the asserts
    # above have already refused such a request with their message.
    rows = tf.where(tf.logical_and(ok, batch <= max_batch), batch, batch + 1)
    return tf.reshape(checked, tf.concat([tf.reshape(rows, [1]), want], 0))


def build_archive(
    model,
    max_samples=DEFAULT_MAX_SAMPLES,
    iw_samples=DEFAULT_IW_SAMPLES,
    max_batch=DEFAULT_MAX_BATCH,
):
    """A `keras.export.ExportArchive` with the five serving signatures of `model`."""
    check_model(model)
    check_count(max_samples, "max_samples")
    check_count(iw_samples, "iw_samples")
    check_count(max_batch, "max_batch")
    latent_dim = int(model.latent_dim)
    x_spec = tf.TensorSpec((None, *model.data_shape), tf.float32, name="x")
    z_spec = tf.TensorSpec((None, latent_dim), tf.float32, name="z")
    int_spec = {
        "num_samples": tf.TensorSpec((), tf.int32, name="num_samples"),
        "seed": tf.TensorSpec((), tf.int32, name="seed"),
    }

    def as_float32(tensor):
        return tf.cast(tensor, tf.float32)

    def reconstruct(x):
        return {
            "reconstruction": as_float32(model.reconstruct(_checked(x, "x", x_spec, max_batch)))
        }

    def encode(x):
        mean, scale = model.encode(_checked(x, "x", x_spec, max_batch))
        return {"mean": as_float32(mean), "scale": as_float32(scale)}

    def decode(z):
        return {"x": as_float32(model.decode(_checked(z, "z", z_spec, max_batch)))}

    def sample(num_samples, seed):
        checks = [
            tf.debugging.assert_greater_equal(
                num_samples,
                1,
                message=f"sample: num_samples must be between 1 and {max_samples}",
            ),
            tf.debugging.assert_less_equal(
                num_samples,
                max_samples,
                message=(
                    f"sample: num_samples must be between 1 and {max_samples} (max_samples, "
                    "fixed at export); ask for fewer per request"
                ),
            ),
        ]
        with tf.control_dependencies(checks):
            # The TFLite converter drops assertions and LiteRT has none: there the clamp is what
            # keeps a request bounded (the asserts above have already refused it in TF).
            count = tf.clip_by_value(num_samples, 1, max_samples)
            shape = tf.stack([count, latent_dim])
        repeatable = rng.standard_normal(shape, seed)
        # Seeds 0 and 0 are the random ops' "unseeded": TF seeds the kernel from the OS when
        # the model loads, TFLite's RANDOM_STANDARD_NORMAL from std::random_device. The raw op
        # is needed: tf.random.normal traced after keras.utils.set_random_seed (the trainer's)
        # bakes a seed in, and every new process then drew the same "fresh" samples.
        fresh = tf.raw_ops.RandomStandardNormal(shape=shape, dtype=tf.float32, seed=0, seed2=0)
        z = tf.where(seed >= 0, repeatable, fresh)
        return {"x": as_float32(model.decode(z)), "z": z}

    def log_likelihood(x):
        x = _checked(x, "x", x_spec, max_batch)
        ll = model.log_likelihood(x, num_samples=iw_samples, seed=LOG_LIKELIHOOD_SEED)
        return {"log_likelihood": as_float32(ll)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", reconstruct, input_signature=[x_spec])
    archive.add_endpoint("encode", encode, input_signature=[x_spec])
    archive.add_endpoint("decode", decode, input_signature=[z_spec])
    archive.add_endpoint(
        "sample", sample, input_signature=[int_spec["num_samples"], int_spec["seed"]]
    )
    archive.add_endpoint("log_likelihood", log_likelihood, input_signature=[x_spec])
    return archive


def read_metadata(saved_model_dir):
    """The metadata written by `export_saved_model`, or a clear error for other folders."""
    path = os.path.join(saved_model_dir, METADATA_PATH)
    if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(
            f"No SavedModel in {saved_model_dir!r} (no saved_model.pb). Pass the version folder "
            "written by export_saved_model, e.g. OUT/vae/1."
        )
    if not os.path.isfile(path):
        raise ValueError(
            f"{saved_model_dir!r} is a SavedModel but not a keras-vae export (no {METADATA_PATH})."
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def export_saved_model(
    model,
    base_dir,
    name="vae",
    version=1,
    overwrite=False,
    max_samples=DEFAULT_MAX_SAMPLES,
    iw_samples=DEFAULT_IW_SAMPLES,
    max_batch=DEFAULT_MAX_BATCH,
):
    """Writes `model` as a SavedModel for TF Serving to `base_dir/<name>/<version>/`.

    The SavedModel is written to a temporary folder beside the target (named `.tmp-...`, which TF
    Serving ignores) and renamed into place, so a failure or a kill midway leaves no partial
    version folder and never touches other versions. The version then has no TFLite files:
    replacing a version removes the ones of the model it replaced (`export_all` writes both).
    One export at a time writes to `base_dir` (a lock; a second one fails at once).

    Args:
        model: keras_vae.VAE. A built (normally trained) model.
        base_dir: str. TF Serving's model base path holds `base_dir/<name>`.
        name: str. The model name (TF Serving's `MODEL_NAME`).
        version: int. The version folder, >= 1; TF Serving serves the highest.
        overwrite: bool. Replace an existing version folder (otherwise `FileExistsError`).
        max_samples: int. Cap on `num_samples` per `sample` request.
        iw_samples: int. Importance samples per example in `log_likelihood`.
        max_batch: int. Cap on the examples (or latents) per `serving_default`, `encode`,
            `decode` and `log_likelihood` request.

    Returns:
        The path of the version folder.

    Example:
    >>> path = export_saved_model(vae, "serving", name="vae", version=1)
    >>> tf.saved_model.load(path).signatures["sample"](num_samples=4, seed=0)["x"]
    """
    check_model(model)
    check_name(name)
    check_version(version)
    check_count(max_samples, "max_samples")
    check_count(iw_samples, "iw_samples")
    check_count(max_batch, "max_batch")
    base_dir = os.fspath(base_dir)
    target = os.path.join(base_dir, name, str(version))
    with publish.locked(base_dir):
        publish.repair(base_dir)
        if os.path.exists(target) and not overwrite:
            raise FileExistsError(
                f"{target!r} already exists. Pass overwrite=True (--overwrite) to replace it, or "
                "choose a new version."
            )
        temp = stage_saved_model(
            model, base_dir, name, version, max_samples, iw_samples, max_batch, {"tflite": {}}
        )
        try:
            commit(temp, base_dir, name, version, overwrite)
        finally:
            if os.path.exists(temp):
                shutil.rmtree(temp, ignore_errors=True)
    return target


def stage_saved_model(
    model, base_dir, name, version, max_samples, iw_samples, max_batch, extra_metadata=None
):
    """Writes the SavedModel to a temporary folder in `base_dir/<name>/`; returns its path.

    `extra_metadata` is merged into the metadata (the caller's record of TFLite files).
    """
    archive = build_archive(model, max_samples, iw_samples, max_batch)
    model_dir = os.path.join(base_dir, name)
    os.makedirs(model_dir, exist_ok=True)
    remove_stale_temps(model_dir)
    temp = _temp_name(model_dir, f"v{version}")
    try:
        archive.write_out(temp, verbose=False)
        meta = metadata(model, name, version, max_samples, iw_samples, max_batch)
        publish.write_metadata(temp, {**meta, **(extra_metadata or {})})
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return temp


def commit(temp, base_dir, name, version, overwrite, committed=None):
    """Moves the staged SavedModel `temp` into place and publishes its TFLite files.

    Ctrl-C waits until both are done. `committed`, a list, gets True appended once the
    version folder is the new one (from then on its staged TFLite files must be kept for
    `publish.repair` if publishing fails).
    """
    target = os.path.join(base_dir, name, str(version))
    with publish.interrupts_deferred():
        _move_into_place(temp, target, overwrite)
        if committed is not None:
            committed.append(True)
        publish.publish(base_dir, name, version)
    return target


def _exchange(a, b):
    """Swaps the folders `a` and `b` in one step (Linux renameat2 with RENAME_EXCHANGE).

    Returns False where the system or file system cannot (other OSes, old kernels, some network
    file systems), so the caller falls back to two renames.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def _move_into_place(temp, target, overwrite):
    if not os.path.exists(target):
        os.rename(temp, target)
        return
    if not overwrite:
        raise FileExistsError(
            f"{target!r} appeared while exporting; not replacing it without overwrite=True."
        )
    if _exchange(temp, target):
        # The version folder was never absent; `temp` now holds the old version, which the
        # caller deletes.
        return
    # A directory cannot be atomically replaced by another: move the old one aside first (under
    # a non-numeric name TF Serving ignores), then delete it once the new one is in place.
    old = (
        f"{os.path.dirname(target)}/{_TEMP_PREFIX}old-{os.path.basename(target)}-{uuid.uuid4().hex}"
    )
    os.rename(target, old)
    try:
        os.rename(temp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _temp_name(model_dir, suffix):
    host = socket.gethostname() or "host"
    return os.path.join(
        model_dir, f"{_TEMP_PREFIX}{host}-{os.getpid()}-{uuid.uuid4().hex}-{suffix}"
    )


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(model_dir):
    """Deletes temporary folders left in `model_dir` by exports on this host that were killed.

    Returns the removed paths. Folders of live processes, or of other hosts sharing the
    folder, are left alone.
    """
    removed = []
    host = socket.gethostname() or "host"
    for entry in sorted(os.listdir(model_dir)):
        match = _TEMP_PATTERN.match(entry)
        if not match or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        path = os.path.join(model_dir, entry)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
