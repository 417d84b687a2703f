"""Fuzz cases for files: `--config` JSON, data files, run folders and `.keras` files.

Each case writes its own small file (or folder) into a fresh temporary folder when it runs and
passes it to the surface a user reaches: `keras-vae-train --config` (`cli.config_from_args`) and
`config.read_config`; `data.load_dataset`; `run_folder.prepare_run_dir` on a copy of a real
one-epoch run folder, damaged; the `.keras` loader of `keras-vae-sample` (`sample.model_kind`
then `sample.KerasModel`). A hostile file must be refused with the surface's own error class
(`ConfigError`, `DataError`, `RunFolderError`, `UsageError`) and words that say what was
expected, without reading forever, blocking on a FIFO or allocating what a small file declares;
a valid one must give the right values (the first row of a CSV kept, 16-bit levels kept). Bombs
stay small on disk: crafted headers, and deflate streams of zeros repeated after a full flush.
The fast subset is about 400 small files (40 s for the four categories, a one-epoch training
run included); `--full` adds bigger bombs (a 3.75 GiB npz, 10**7 gzip'd IDX images, 4 GiB
.keras weights), wide and deep folders, random cuts and bytes.
"""

import base64
import functools
import gzip
import io
import json
import marshal
import os
import shutil
import struct
import tempfile
import zipfile
import zlib

import numpy as np
import reliability_helpers as helpers
from fuzz import Case


@functools.cache
def _root():
    return helpers.temp_dir("fuzz_files")


def _fresh():
    """A new empty folder under this process's temporary root."""
    return tempfile.mkdtemp(dir=_root())


def _write(folder, name, content):
    """Writes `content` (bytes, str or a callable taking the path) to `folder/name`."""
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        with open(path, "wb") as f:
            f.write(content)
    else:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(content)
    return path


def _fifo(path):
    os.mkfifo(path)


def _deep(levels, opening="[", closing="]"):
    return opening * levels + closing * levels


def _garbage(size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


class _Env:
    """Sets environment variables for the length of a `with` block (the worker is shared)."""

    def __init__(self, **values):
        self.values = values

    def __enter__(self):
        self.old = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc):
        for key, value in self.old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _deflate_zeros(prefix, zero_mib):
    """A raw deflate stream of `prefix` then `zero_mib` MiB of zeros, ~1/1000 of their size:
    after a full flush deflate restarts from nothing, so one compressed MiB of zeros repeats
    byte for byte and the stream is written in milliseconds."""
    encoder = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = encoder.compress(prefix) + encoder.flush(zlib.Z_FULL_FLUSH)
    zeros = encoder.compress(bytes(2**20)) + encoder.flush(zlib.Z_FULL_FLUSH)
    return head + zeros * zero_mib + encoder.flush()


def _zip_with_one_member(name, deflated, size, crc=0):
    """A zip archive of one deflated member that declares `size` bytes (< 4 GiB, no zip64).

    The CRC-32 is left wrong (0): a reader that refuses at the member's header never reaches it.
    """
    name = name.encode()
    local = (
        struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(deflated), size, len(name), 0
        )
        + name
    )
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            0,
            0,
            crc,
            len(deflated),
            size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            0,
        )
        + name
    )
    offset = len(local) + len(deflated)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), offset, 0)
    return local + deflated + central + end


def _npy_header(shape, descr="|u1"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def _npz_bomb(zero_mib):
    """An .npz whose x.npy inflates to `zero_mib` MiB of uint8 zeros, (zero_mib * 4096, 16, 16)."""
    shape = (zero_mib * 4096, 16, 16)
    header = _npy_header(shape)
    deflated = _deflate_zeros(header, zero_mib)
    return _zip_with_one_member("x.npy", deflated, len(header) + zero_mib * 2**20)


def _gzip_idx_bomb(dims):
    """A gzip'd IDX images file of `dims` zeros (a multiple of 1 MiB), CRC and length left 0."""
    count = int(np.prod(dims, dtype=np.float64)) // 2**20
    body = _deflate_zeros(struct.pack(">iIII", 0x803, *dims), count)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + struct.pack("<II", 0, 0)


# ------------------------------------------------------------------------------------------------
# --config files and dicts: training.config (TrainConfig.from_dict, read_config) and the CLI.

CONFIG_REFUSED = (
    r"must be|expected|Unknown|applies to|is a bound|not valid UTF-8 JSON|nested too deeply|"
    r"is over \d+ bytes|Cannot read|holds a JSON|is empty|does not exist|Unsupported data|"
    r"needs images|must list devices|drop it or use"
)


def _from_file(path, *flags):
    """`keras-vae-train --config PATH FLAGS...`'s config, as the command merges it."""
    from keras_vae.training import cli

    return cli.config_from_args(cli.build_parser().parse_args(["--config", path, *flags]))


def _config_file(content, *flags, name="config.json"):
    return lambda: _from_file(_write(_fresh(), name, content), *flags)


def _read_config(path):
    from keras_vae.training import config

    return config.read_config(path)


def _read_config_file(content, name="config.json"):
    return lambda: _read_config(_write(_fresh(), name, content))


def _from_dict(values):
    from keras_vae.training.config import TrainConfig

    return lambda: TrainConfig.from_dict(values)


def _sized(values, data_shape=(8, 8, 1)):
    """The config, then the trainer's size check for data of `data_shape` (ModelTooLarge)."""

    def run():
        from keras_vae.training import model_size
        from keras_vae.training.config import TrainConfig

        config = TrainConfig.from_dict(values)
        model_size.check_training(config, data_shape)
        return config

    return run


def _fields(**expected):
    def check(config):
        for key, want in expected.items():
            got = getattr(config, key)
            if got != want or type(got) is not type(want):
                return f"{key} is {got!r} ({type(got).__name__}); expected {want!r}"
        return None

    return check


def config_cases(full):
    from keras_vae.training.checks import ConfigError
    from keras_vae.training.config import MAX_SEED, TrainConfig

    errors = (ConfigError,)

    def bad(name, run, refusal=CONFIG_REFUSED, seconds=30.0):
        return Case(name, run, "error", refusal, errors, seconds=seconds)

    def good(name, run, check):
        return Case(name, run, "result", CONFIG_REFUSED, errors, check)

    default = TrainConfig().to_dict()
    changed = {**default, "latent_dim": 3, "hidden_units": [32, 16], "epochs": 2, "seed": 7}
    cases = [
        good(
            "file: a minimal object",
            _config_file('{"data": "digits"}'),
            _fields(data="digits", epochs=30, latent_dim=2),
        ),
        good(
            "file: a full config round-trips",
            _config_file(json.dumps(changed)),
            _fields(latent_dim=3, hidden_units=(32, 16), epochs=2, seed=7),
        ),
        good(
            "file: flags override the file",
            _config_file('{"epochs": 5}', "--epochs", "3"),
            _fields(epochs=3),
        ),
        good("file: an int for a float field", _config_file('{"beta": 2}'), _fields(beta=2)),
        good(
            "file: null for an optional field",
            _config_file('{"likelihood": null}'),
            _fields(likelihood=None),
        ),
        good(
            f"file: seed {MAX_SEED}",
            _config_file(f'{{"seed": {MAX_SEED}}}'),
            _fields(seed=MAX_SEED),
        ),
        good(
            "file: sigma as a number",
            _config_file('{"likelihood": "gaussian", "sigma": 0.1}'),
            _fields(sigma=0.1),
        ),
        good(
            "file: whitespace and newlines around the object",
            _config_file('\n\t {"epochs": 4}\r\n\n'),
            _fields(epochs=4),
        ),
        good(
            "read_config: a run's config.json",
            _read_config_file(json.dumps(changed)),
            _fields(latent_dim=3, hidden_units=(32, 16)),
        ),
        good("dict: a TrainConfig's to_dict", _from_dict(changed), _fields(epochs=2, seed=7)),
        Case(
            "file: a UTF-8 byte-order mark before the object",
            _config_file('\ufeff{"epochs": 4}'),
            "either",
            r"BOM|byte.order",
            errors,
            _fields(epochs=4),
        ),
    ]
    wrong_values = [
        ("binarize", "false"),
        ("binarize", "true"),
        ("export", "false"),
        ("export", "no"),
        ("binarize", 0),
        ("export", 1),
        ("epochs", "2"),
        ("epochs", 2.5),
        ("epochs", 2.0),
        ("epochs", 0),
        ("epochs", -1),
        ("epochs", True),
        ("epochs", None),
        ("epochs", [1]),
        ("latent_dim", 0),
        ("latent_dim", -5),
        ("latent_dim", "2"),
        ("latent_dim", 1e400),
        ("seed", 2**32),
        ("seed", MAX_SEED + 1),
        ("seed", -1),
        ("seed", 1.5),
        ("seed", "0"),
        ("seed", 2**64),
        ("seed", -(2**63)),
        ("learning_rate", 0),
        ("learning_rate", -1e-3),
        ("learning_rate", True),
        ("learning_rate", "1e-3"),
        ("beta", -1),
        ("beta", 10**400),
        ("free_bits", -0.5),
        ("test_split", 0),
        ("test_split", 1),
        ("test_split", 1.5),
        ("test_split", -0.2),
        ("test_split", "0.2"),
        ("test_split", True),
        ("batch_size", 0),
        ("hidden_units", []),
        ("hidden_units", [0]),
        ("hidden_units", [16.0]),
        ("hidden_units", "16"),
        ("hidden_units", [True]),
        ("hidden_units", [-1, 4]),
        ("hidden_units", {"a": 1}),
        ("filters", []),
        ("filters", [[32]]),
        ("arch", "transformer"),
        ("arch", None),
        ("likelihood", "poisson"),
        ("objective", "vae"),
        ("activation", "sigmoid"),
        ("activation", ""),
        ("precision", "float8"),
        ("strategy", "tpu"),
        ("lr_schedule", "linear"),
        ("sigma", 0),
        ("sigma", -1),
        ("sigma", "big"),
        ("sigma", True),
        ("verbose", 3),
        ("verbose", "1"),
        ("verbose", 1.0),
        ("limit", 1),
        ("limit", 0),
        ("limit", "all"),
        ("iwae_samples", 0),
        ("iwae_samples", 10**9),
        ("eval_examples", 0),
        ("eval_examples", -3),
        ("k", 0),
        ("data", 123),
        ("data", ""),
        ("data", None),
        ("data", "nosuchname"),
        ("data", "/nonexistent/x.npz"),
        ("data", "/etc/hostname"),
        ("dense_units", 0),
        ("warmup_epochs", -1),
        ("devices", "/cpu:0"),
    ]
    for key, value in wrong_values:
        text = (
            json.dumps({key: value})
            if not isinstance(value, int) or abs(value) < 2**70
            else (f'{{"{key}": {value}}}')
        )
        cases.append(bad(f"file: {key} {text[len(key) + 5 : -1][:40]}", _config_file(text)))
    for label, text in [
        ("learning_rate NaN", '{"learning_rate": NaN}'),
        ("learning_rate Infinity", '{"learning_rate": Infinity}'),
        ("beta -Infinity", '{"beta": -Infinity}'),
        ("beta 1e999 (inf)", '{"beta": 1e999}'),
        ("sigma NaN", '{"likelihood": "gaussian", "sigma": NaN}'),
        ("test_split NaN", '{"test_split": NaN}'),
        ("epochs 1e999 (inf)", '{"epochs": 1e999}'),
        ("seed of 5000 digits", '{"seed": 1' + "0" * 5000 + "}"),
        ("k 5 with elbo", '{"k": 5}'),
        ("iwae with beta 2", '{"objective": "iwae", "k": 4, "beta": 2}'),
        ("iwae with free bits", '{"objective": "iwae", "k": 4, "free_bits": 0.5}'),
        ("binarize with a gaussian", '{"binarize": true, "likelihood": "gaussian"}'),
        ("devices without mirrored", '{"devices": "/cpu:0,/cpu:1"}'),
        ("devices of commas", '{"strategy": "mirrored", "devices": ",,,"}'),
        ("conv on the ring", '{"arch": "conv", "data": "ring"}'),
        ("an unknown key", '{"latentdim": 3}'),
        ("an unknown dunder key", '{"__class__": "TrainConfig"}'),
        ("a duplicated key, the last wrong", '{"epochs": 1, "epochs": "x"}'),
        ("a JSON list", "[1, 2]"),
        ("a JSON string", '"digits"'),
        ("a JSON number", "42"),
        ("JSON null", "null"),
        ("JSON true", "true"),
        ("an empty file", ""),
        ("whitespace only", " \n\t\n"),
        ("a truncated object", '{"data": "digits", "epochs": 3'),
        ("trailing garbage", '{"data": "digits"} xyz'),
        ("two objects", '{"epochs": 1}{"epochs": 2}'),
        ("single quotes", "{'epochs': 1}"),
        ("a comment", '{"epochs": 1 // one\n}'),
        ("a trailing comma", '{"epochs": 1,}'),
        ("lists nested 100000 deep", _deep(100_000)),
        ("objects nested 100000 deep", '{"a":' * 100_000 + "1" + "}" * 100_000),
        ("nested 100000 deep inside a key", '{"data": ' + _deep(100_000) + "}"),
        ("a string of 900 KB", json.dumps({"data": "x" * 900_000})),
        ("a file of 2 MB", json.dumps({"data": "digits", "pad": " " * 2_000_000})),
    ]:
        cases.append(bad(f"file: {label}", _config_file(text)))
    for label, content in [
        ("binary garbage", _garbage(4096)),
        ("NUL bytes", b"\x00" * 64),
        ("invalid UTF-8", b'{"data": "\xff\xfe"}'),
        ("UTF-16 with its BOM", '{"epochs": 1}'.encode("utf-16")),
        ("latin-1 text", '{"data": "caf\xe9"}'.encode("latin-1")),
        ("a gzip'd config", gzip.compress(b'{"epochs": 1}')),
    ]:
        cases.append(bad(f"file: {label}", _config_file(content)))

    def special(path):
        return lambda: _from_file(path)

    def made(make, name="config.json"):
        return lambda: _from_file(_write(_fresh(), name, make))

    cases += [
        bad("file: /dev/zero (endless)", special("/dev/zero"), r"is over \d+ bytes", seconds=10),
        bad(
            "file: /dev/urandom (endless)",
            special("/dev/urandom"),
            r"is over \d+ bytes",
            seconds=10,
        ),
        bad("file: /dev/null", special("/dev/null")),
        bad("file: a directory", lambda: _from_file(_fresh()), r"Cannot read"),
        bad(
            "file: a missing file",
            lambda: _from_file(os.path.join(_fresh(), "no.json")),
            r"Cannot read",
        ),
        bad("file: a FIFO nobody writes", made(_fifo), CONFIG_REFUSED, seconds=10),
        bad("file: a symlink loop", made(lambda p: os.symlink(p, p)), r"Cannot read"),
        bad("file: a broken symlink", made(lambda p: os.symlink(p + ".gone", p)), r"Cannot read"),
        bad(
            "read_config: /dev/zero (endless)",
            lambda: _read_config("/dev/zero"),
            r"is over \d+ bytes",
            seconds=10,
        ),
        bad("read_config: a JSON list", _read_config_file("[1]")),
        bad("read_config: nested 100000 deep", _read_config_file(_deep(100_000))),
        bad("read_config: binary garbage", _read_config_file(_garbage(512, 1))),
        bad(
            "read_config: wrong types",
            _read_config_file('{"binarize": "false"}'),
            r"binarize must be true or false",
        ),
        bad(
            "read_config: a missing file",
            lambda: _read_config(os.path.join(_fresh(), "none.json")),
            r"Cannot read",
        ),
        bad("dict: a list", _from_dict([("epochs", 1)]), r"must be a TrainConfig or a dict"),
        bad("dict: None", _from_dict(None), r"must be a TrainConfig or a dict"),
        bad("dict: a non-string key", _from_dict({1: 2}), r"Unknown config keys"),
        bad("dict: a string boolean", _from_dict({"export": "false"}), r"true or false"),
        bad("dict: a numpy int for epochs", _from_dict({"epochs": np.int64(3)}), r"integer"),
        bad("dict: a tuple for data", _from_dict({"data": ("digits",)}), r"data must be"),
        bad("size: latent_dim 10**7", _sized({"latent_dim": 10**7}), r"would have [\d,]+ weights"),
        bad(
            "size: latent_dim 10**400",
            _sized({"latent_dim": 10**400}),
            r"would have [\d,]+ weights",
        ),
        bad(
            "size: hidden_units [10**7]",
            _sized({"hidden_units": [10**7]}),
            r"would have [\d,]+ weights",
        ),
        bad("size: batch_size 10**9", _sized({"batch_size": 10**9}), r"activations"),
        bad("size: batch_size 10**400", _sized({"batch_size": 10**400}), r"activations"),
        bad("size: iwae k 10**6", _sized({"objective": "iwae", "k": 10**6}), r"activations"),
        good("size: the default config fits", _sized({}), _fields(latent_dim=2)),
    ]
    # The flags the correct answers skipped: booleans must be real booleans in the dict too.
    cases.append(bad("dict: binarize 'false'", _from_dict({"binarize": "false"}), r"true or false"))
    if full:
        for depth in (1000, 5000, 20_000):
            cases.append(bad(f"file: lists nested {depth} deep", _config_file(_deep(depth))))
        cases.append(bad("file: 1 MiB exactly of spaces", _config_file(" " * 2**20)))
        cases.append(
            bad("file: 1 MiB + 1 of spaces", _config_file(" " * (2**20 + 1)), r"is over \d+ bytes")
        )
        for seed in range(20):
            cases.append(bad(f"file: random bytes #{seed}", _config_file(_garbage(256, seed))))
        for seed in range(10):
            rng = np.random.default_rng(seed)
            text = json.dumps(default)
            cut = int(rng.integers(1, len(text) - 1))
            cases.append(bad(f"file: a config cut at byte {cut}", _config_file(text[:cut])))
    return cases


# ------------------------------------------------------------------------------------------------
# Data files: training.data.load_dataset (data_files, data_idx, data_images).

DATA_REFUSED = (
    r"expected|empty|NaN or inf|truncated or corrupt|Could not|over the memory budget|"
    r"does not decode|differ in size|transparent|FIFO|device|not a regular file|holds no|"
    r"Unknown data|Unsupported data|single number|should hold|magic number|shorter than|"
    r"too large to decode|at least 2|labels for|integer pixels|rows of different lengths|"
    r"line \d+"
)


def _load(path, **kwargs):
    from keras_vae.training.data import load_dataset

    return load_dataset(path, **kwargs)


def _data_file(name, content, **kwargs):
    """Writes `content` to a fresh folder's `name`, then loads the file."""
    return lambda: _load(_write(_fresh(), name, content), **kwargs)


def _data_folder(files, spec=None, **kwargs):
    """Writes `{relative name: content}` into a fresh folder, then loads it (or `spec`, a path
    relative to it)."""

    def run():
        folder = _fresh()
        for name, content in files.items():
            _write(folder, name, content)
        return _load(os.path.join(folder, spec) if spec else folder, **kwargs)

    return run


def _with_budget(gib, run):
    from keras_vae.training.data import BUDGET_ENV

    def guarded():
        with _Env(**{BUDGET_ENV: str(gib)}):
            return run()

    return guarded


def _npy(array, **kwargs):
    def write(path):
        np.save(path, array, **kwargs)

    return write


def _npz(compressed=False, **arrays):
    def write(path):
        (np.savez_compressed if compressed else np.savez)(path, **arrays)

    return write


def _idx(images, magic=0x803):
    images = np.asarray(images, np.uint8)
    return (
        struct.pack(">i", magic) + struct.pack(f">{images.ndim}I", *images.shape) + images.tobytes()
    )


def _png(array, mode=None, **save):
    def write(path):
        from PIL import Image

        image = Image.fromarray(array) if mode is None else Image.fromarray(array, mode)
        image.save(path, format=save.pop("format", "PNG"), **save)

    return write


def _png_bytes(array, mode=None):
    from PIL import Image

    buf = io.BytesIO()
    (Image.fromarray(array) if mode is None else Image.fromarray(array, mode)).save(buf, "PNG")
    return buf.getvalue()


def _png_header_only(width, height):
    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def _every(ds):
    return np.concatenate([ds.x_train, ds.x_test])


def _data_check(shape=None, count=None, kind=None, labels=None, then=None):
    """A check of a loaded Dataset: the example shape, the total count, the kind, labels, values
    finite in [0, 1], and `then(ds)` (a problem string or None)."""

    def check(ds):
        x = _every(ds)
        if shape is not None and tuple(x.shape[1:]) != tuple(shape):
            return f"examples of shape {x.shape[1:]}, expected {shape}"
        if count is not None and len(x) != count:
            return f"{len(x)} examples, expected {count}"
        if kind is not None and ds.info["kind"] != kind:
            return f"kind {ds.info['kind']}, expected {kind}"
        if labels is not None and (ds.y_train is not None) != labels:
            return f"labels {'present' if ds.y_train is not None else 'absent'}"
        if x.dtype != np.float32:
            return f"dtype {x.dtype}, expected float32"
        if not np.isfinite(x).all():
            return "values not finite"
        # Tables are min-max scaled from the training split: held-out values may lie beyond.
        inside = x if ds.info["kind"] == "image" else ds.x_train
        if inside.min() < 0 or inside.max() > 1:
            return f"values outside [0, 1]: [{inside.min()}, {inside.max()}]"
        return then(ds) if then else None

    return check


def _levels(expected, scale):
    """A check that the data hold exactly the levels `expected` / `scale`, none merged."""

    def then(ds):
        got = np.unique(np.round(_every(ds) * scale).astype(np.int64))
        if not np.array_equal(got, np.unique(expected)):
            return f"levels {got[:8]}... ({len(got)}), expected {len(np.unique(expected))} levels"
        return None

    return then


def _rows(expected):
    """A check that the table's rows, un-scaled with the recorded min and max, are `expected`
    (in any order): no row lost (a first row taken for a header), none changed."""

    def then(ds):
        lo, hi = np.array(ds.info["min"]), np.array(ds.info["max"])
        half = np.where(hi > lo, hi / 2 - lo / 2, 0.5)  # halves: 1e308 - -1e308 overflows
        rows = (lo / 2 + _every(ds).astype("float64") * half) * 2
        want = np.array(expected, "float64")
        got, want = rows[np.lexsort(rows.T[::-1])], want[np.lexsort(want.T[::-1])]
        tolerance = 1e-5 * np.maximum(1.0, np.maximum(abs(lo), abs(hi)))
        if got.shape != want.shape or (abs(got - want) > tolerance).any():
            return f"rows {got[:4].tolist()}, expected {want[:4].tolist()}"
        return None

    return then


def _same_images(images):
    """A check that the data hold exactly these 8-bit images, in any order."""

    def then(ds):
        got = sorted(a.tobytes() for a in np.round(_every(ds)[..., 0] * 255).astype(np.uint8))
        want = sorted(np.asarray(a, np.uint8).tobytes() for a in images)
        return None if got == want else "the pixels differ from the images written"

    return then


def data_cases(full):
    from keras_vae.training.data import DataError

    errors = (DataError,)
    cases = []

    def bad(name, run, refusal=DATA_REFUSED, seconds=30.0):
        cases.append(Case(name, run, "error", refusal, errors, seconds=seconds))

    def good(name, run, check, seconds=30.0):
        cases.append(Case(name, run, "result", DATA_REFUSED, errors, check, seconds))

    rng = np.random.default_rng(0)
    table = rng.standard_normal((10, 3)).astype("float32")
    pixels = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8)

    # .npy
    good("npy: a float32 table", _data_file("t.npy", _npy(table)), _data_check((3,), 10, "vector"))
    good(
        "npy: uint8 images",
        _data_file("x.npy", _npy(pixels)),
        _data_check((8, 8, 1), 10, "image", then=_levels(pixels, 255)),
    )
    good("npy: bool images", _data_file("b.npy", _npy(pixels > 127)), _data_check((8, 8, 1), 10))
    good(
        "npy: float16 table",
        _data_file("h.npy", _npy(table.astype("float16"))),
        _data_check((3,), 10),
    )
    big = np.array([[-1e308, 1.0], [1e308, 2.0], [0.0, 3.0], [5e307, 4.0]] * 3)
    good(
        "npy: values of +-1e308",
        _data_file("huge.npy", _npy(big)),
        _data_check((2,), 12, then=_rows(big)),
    )
    bad("npy: a 0-d array", _data_file("s.npy", _npy(np.float64(3.0))), r"single number")
    bad(
        "npy: object dtype (a pickle)",
        _data_file("o.npy", _npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)),
        r"holds Python objects .*pickle",
    )
    bad("npy: strings", _data_file("u.npy", _npy(np.array([["a", "b"], ["c", "d"]]))), r"numeric")
    bad("npy: complex", _data_file("c.npy", _npy(np.ones((4, 2), complex))), r"numeric")
    bad("npy: structured", _data_file("r.npy", _npy(np.zeros(4, "i4,f4"))), r"numeric|structured")
    bad("npy: 1-D", _data_file("v.npy", _npy(np.arange(5.0))), r"expected")
    bad(
        "npy: 2 channels",
        _data_file("c2.npy", _npy(np.zeros((4, 3, 3, 2), "uint8"))),
        r"expected images",
    )
    bad("npy: 5-D", _data_file("d5.npy", _npy(np.zeros((2, 2, 2, 2, 1), "uint8"))), r"expected")
    bad("npy: shape (0, 5)", _data_file("e.npy", _npy(np.zeros((0, 5)))), r"empty")
    bad("npy: shape (4, 0)", _data_file("e0.npy", _npy(np.zeros((4, 0)))), r"empty")
    bad("npy: one example", _data_file("one.npy", _npy(np.zeros((1, 3)))), r"at least 2")
    nan = table.copy()
    nan[3, 1] = np.nan
    bad("npy: a NaN", _data_file("n.npy", _npy(nan)), r"NaN or inf")
    inf = table.copy()
    inf[0, 0] = -np.inf
    bad("npy: a -inf", _data_file("i.npy", _npy(inf)), r"NaN or inf")
    bad(
        "npy: negative integer pixels",
        _data_file("neg.npy", _npy(-pixels.astype("int16"))),
        r"integer pixels must be >= 0",
    )
    bad(
        "npy: uint16 pixels to 1000",
        _data_file("u16.npy", _npy(np.full((3, 4, 4), 1000, "u2"))),
        r"range up to 1000",
    )
    bad(
        "npy: float pixels to 300",
        _data_file("f300.npy", _npy(np.full((3, 4, 4), 300.0))),
        r"expected \[0, 1\] or 0\.\.255",
    )
    bad(
        "npy: a header declaring (10**6, 3000, 3000) over 64 bytes",
        _data_file("lie.npy", _npy_header((10**6, 3000, 3000), "<f4") + bytes(64)),
        r"declares an array of shape \(1000000, 3000, 3000\).*truncated or corrupt",
    )
    bad(
        "npy: truncated payload",
        _data_file(
            "cut.npy",
            lambda p: (np.save(p, table), open(p, "r+b").truncate(os.path.getsize(p) - 7)),
        ),
        r"truncated or corrupt",
    )
    bad("npy: an empty file", _data_file("z.npy", b""), r"Could not read")
    bad("npy: garbage", _data_file("g.npy", _garbage(1000)), r"Could not read")
    bad(
        "npy: format version 3",
        _data_file("v3.npy", b"\x93NUMPY\x03\x00" + bytes(100)),
        r"format version 3\.0|Could not read",
    )
    bad(
        "npy: over a 32 MiB budget",
        _with_budget(1 / 32, _data_file("b.npy", _npy(np.zeros((64, 512, 512), np.uint8)))),
        r"64\.0 MiB as float32, over the memory budget of 32\.0 MiB",
    )

    # .npz
    good(
        "npz: x_train and x_test",
        _data_file("s.npz", _npz(x_train=pixels[:6], x_test=pixels[6:])),
        _data_check((8, 8, 1), 10, then=_levels(pixels, 255)),
    )
    good(
        "npz: x and integer y",
        _data_file("xy.npz", _npz(x=pixels, y=np.arange(10) % 3)),
        _data_check((8, 8, 1), 10, labels=True),
    )
    good("npz: compressed x", _data_file("c.npz", _npz(True, x=table)), _data_check((3,), 10))
    bad("npz: wrong keys", _data_file("k.npz", _npz(a=table)), r"expected 'x_train' and 'x_test'")
    bad(
        "npz: shapes that disagree",
        _data_file("d.npz", _npz(x_train=pixels, x_test=np.zeros((3, 7, 7), np.uint8))),
        r"must agree",
    )
    bad(
        "npz: labels of the wrong length",
        _data_file("l.npz", _npz(x=table, y=np.arange(4))),
        r"4 labels for 10 examples",
    )
    bad(
        "npz: object labels (a pickle)",
        _data_file("ol.npz", _npz(x=table, y=np.array([None] * 10, dtype=object))),
        r"holds Python objects .*pickle",
    )
    bad("npz: a 0-d y", _data_file("y0.npz", _npz(x=table, y=np.int64(1))), r"single value")
    bad("npz: a 0-d x", _data_file("x0.npz", _npz(x=np.float64(2.0))), r"single number")
    bad("npz: empty x_test", _data_file("et.npz", _npz(x_train=table, x_test=table[:0])), r"empty")
    bad("npz: NaN in x_test", _data_file("nt.npz", _npz(x_train=table, x_test=nan)), r"NaN or inf")
    bad(
        "npz: truncated to half",
        _data_file(
            "half.npz",
            lambda p: (np.savez(p, x=table), open(p, "r+b").truncate(os.path.getsize(p) // 2)),
        ),
        r"Could not read .* as \.npz",
    )
    bad("npz: an empty file", _data_file("e.npz", b""), r"Could not read")
    bad("npz: garbage", _data_file("g.npz", _garbage(2000, 2)), r"Could not read")
    bad(
        "npz: a member header declaring (10**6, 3000, 3000)",
        _data_file(
            "lie.npz",
            lambda p: (
                zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED)
                .__enter__()
                .writestr("x.npy", _npy_header((10**6, 3000, 3000), "<f4") + bytes(64))
            ),
        ),
        r"declares an array of shape \(1000000, 3000, 3000\)",
    )
    bad(
        "npz bomb: 1.25 GiB of zeros in ~1.3 MB (5 GiB as float32)",
        _data_file("bomb.npz", _npz_bomb(1280)),
        r"over the memory budget of 4\.0 GiB",
    )
    bad(
        "npz: compressed zeros over a 32 MiB budget",
        _with_budget(1 / 32, _data_file("z.npz", _npz(True, x=np.zeros((64, 512, 512), np.uint8)))),
        r"over the memory budget of 32\.0 MiB",
    )

    # .csv
    good(
        "csv: a BOM and no header keeps the first row",
        _data_file("bom.csv", "\ufeff1,2\n3,4\n5,6\n"),
        _data_check((2,), 3, "vector", then=_rows([[1, 2], [3, 4], [5, 6]])),
    )
    good(
        "csv: a header row is skipped",
        _data_file("h.csv", "a,b\n1,2\n3,4\n5,6\n"),
        _data_check((2,), 3, then=_rows([[1, 2], [3, 4], [5, 6]])),
    )
    good(
        "csv: a BOM and a header",
        _data_file("bh.csv", "\ufeffa,b\r\n1,2\r\n3,4\r\n"),
        _data_check((2,), 2, then=_rows([[1, 2], [3, 4]])),
    )
    good(
        "csv: quoted numbers, spaces, blank lines",
        _data_file("q.csv", '"1", 2 \n\n 3 ,"4"\n\n'),
        _data_check((2,), 2, then=_rows([[1, 2], [3, 4]])),
    )
    good(
        "csv: values of +-1e308",
        _data_file("huge.csv", "-1e308,1\n1e308,2\n0,3\n5e307,4\n"),
        _data_check((2,), 4, then=_rows(big[:4])),
    )
    bad(
        "csv: a field of 200000 characters",
        _data_file("w.csv", "1,2\n3," + "4" * 200_000 + "\n"),
        r"field larger than field limit",
    )
    bad(
        "csv: a word in line 3",
        _data_file("nn.csv", "1,2\n3,4\nfive,6\n"),
        r"line 3: expected numbers",
    )
    bad("csv: ragged rows", _data_file("r.csv", "1,2\n3,4,5\n"), r"rows of different lengths")
    bad("csv: semicolons", _data_file("sc.csv", "1;2\n3;4\n"), r"line 2: expected numbers")
    bad("csv: an empty file", _data_file("e.csv", ""), r"empty")
    bad("csv: a header only", _data_file("ho.csv", "a,b\n"), r"empty")
    bad("csv: nan", _data_file("nan.csv", "1,nan\n2,3\n"), r"NaN or inf")
    bad("csv: 1e999 (inf)", _data_file("inf.csv", "1,2\n1e999,3\n"), r"NaN or inf")
    bad("csv: latin-1 bytes", _data_file("l1.csv", b"1,2\n3,\xe9\n"), r"does not decode as UTF-8")
    bad("csv: NUL bytes", _data_file("nul.csv", b"1,2\n\x00,3\n"), r"line 2|Could not|CSV")
    bad("csv: one row", _data_file("one.csv", "1,2\n"), r"at least 2")
    bad(
        "csv: binary garbage",
        _data_file("g.csv", _garbage(3000, 3)),
        r"does not decode|line \d+|CSV",
    )

    # IDX
    idx_images = rng.integers(0, 256, (6, 4, 5), dtype=np.uint8)
    good(
        "idx: raw images",
        _data_file("train-images-idx3-ubyte", _idx(idx_images)),
        _data_check((4, 5, 1), 6, "image", then=_levels(idx_images, 255)),
    )
    good(
        "idx: gzip'd images",
        _data_file("x-idx3-ubyte.gz", gzip.compress(_idx(idx_images))),
        _data_check((4, 5, 1), 6, then=_levels(idx_images, 255)),
    )
    good(
        "idx: a folder with labels",
        _data_folder(
            {
                "train-images-idx3-ubyte": _idx(idx_images),
                "train-labels-idx1-ubyte": _idx(np.arange(6) % 2, 0x801),
            }
        ),
        _data_check((4, 5, 1), 6, labels=True),
    )
    for gz in (False, True):
        name = "train-images-idx3-ubyte" + (".gz" if gz else "")
        pack = gzip.compress if gz else (lambda b: b)
        tag = "gz" if gz else "raw"
        for dims in [(-1, -5, 4), (2**31 - 1,) * 3, (-(2**31), 1, 1), (10**6, 3000, 3000)]:
            content = pack(struct.pack(">iiii" if min(dims) < 0 else ">iIII", 0x803, *dims))
            bad(
                f"idx {tag}: dims {dims}",
                _data_file(name, content + pack(bytes(0))),
                r"should hold|over the memory budget",
            )
        bad(
            f"idx {tag}: truncated payload",
            _data_file(name, pack(_idx(idx_images)[:-10])),
            r"should hold|truncated or corrupt",
        )
        bad(
            f"idx {tag}: more than declared",
            _data_file(name, pack(_idx(idx_images) + b"\0")),
            r"should hold .* but holds",
        )
        bad(
            f"idx {tag}: wrong magic",
            _data_file(name, pack(_idx(idx_images, 0x801))),
            r"magic number",
        )
        bad(f"idx {tag}: 3 bytes", _data_file(name, pack(b"\0\0\x08")), r"shorter than its header")
        bad(f"idx {tag}: zero images", _data_file(name, pack(_idx(np.zeros((0, 4, 4))))), r"empty")
    bad(
        "idx gz: a cut gzip stream",
        _data_file("x-idx3-ubyte.gz", gzip.compress(_idx(idx_images))[:-12]),
        r"Could not read IDX|truncated or corrupt",
    )
    bad("idx gz: not gzip", _data_file("x-idx3-ubyte.gz", _idx(idx_images)), r"Could not read IDX")
    bad(
        "idx gz bomb: 2*10**6 28x28 images in ~1.5 MB",
        _data_file("train-images-idx3-ubyte.gz", _gzip_idx_bomb((2_000_000, 28, 28))),
        r"declares shape \(2000000, 28, 28\).*over the memory budget",
    )
    bad(
        "idx: labels of the wrong count",
        _data_folder(
            {
                "train-images-idx3-ubyte": _idx(idx_images),
                "train-labels-idx1-ubyte": _idx(np.arange(4), 0x801),
            }
        ),
        r"4 labels for 6 images",
    )
    bad(
        "idx: only test files",
        _data_folder({"t10k-images-idx3-ubyte": _idx(idx_images)}),
        r"holds only test IDX files",
    )

    # Image folders
    grey = [rng.integers(0, 256, (5, 6), dtype=np.uint8) for _ in range(4)]
    good(
        "images: 8-bit grey PNGs",
        _data_folder({f"{i}.png": _png(a) for i, a in enumerate(grey)}),
        _data_check((5, 6, 1), 4, "image", then=_levels(np.stack(grey), 255)),
    )
    levels16 = np.linspace(0, 65535, 30).astype(np.uint16).reshape(5, 6)
    good(
        "images: 16-bit PNGs keep 65536 levels",
        _data_folder({f"{i}.png": _png(np.roll(levels16, i)) for i in range(3)}),
        _data_check((5, 6, 1), 3, then=_levels(levels16, 65535)),
    )
    opaque = np.dstack([grey[0], grey[1], grey[2], np.full((5, 6), 255, np.uint8)])
    good(
        "images: opaque RGBA loads as RGB",
        _data_folder({"a.png": _png(opaque, "RGBA"), "b.png": _png(opaque, "RGBA")}),
        _data_check((5, 6, 3), 2, then=_levels(opaque[..., :3], 255)),
    )
    good(
        "images: grey and RGB together are RGB",
        _data_folder({"a.png": _png(grey[0]), "b.png": _png(opaque[..., :3], "RGB")}),
        _data_check((5, 6, 3), 2),
    )
    good(
        "images: class subfolders give labels",
        _data_folder(
            {
                "cat/a.png": _png(grey[0]),
                "cat/b.png": _png(grey[1]),
                "dog/c.png": _png(grey[2]),
                "dog/d.png": _png(grey[3]),
            }
        ),
        _data_check((5, 6, 1), 4, labels=True),
    )
    good(
        "images: a JPEG named .png",
        _data_folder(
            {"a.png": _png(grey[0], format="JPEG"), "b.jpg": _png(grey[1], format="JPEG")}
        ),
        _data_check((5, 6, 1), 2),
    )
    good(
        "images: a symlink loop of folders is not entered",
        _data_folder(
            {
                "a.png": _png(grey[0]),
                "b.png": _png(grey[1]),
                "loop": lambda p: os.symlink(os.path.dirname(p), p),
            }
        ),
        _data_check((5, 6, 1), 2),
    )
    transparent = opaque.copy()
    transparent[0, 0, 3] = 0
    bad(
        "images: transparent RGBA",
        _data_folder({"a.png": _png(transparent, "RGBA"), "b.png": _png(opaque, "RGBA")}),
        r"transparent",
    )
    bad(
        "images: a FIFO named x.png",
        _data_folder({"a.png": _png(grey[0]), "x.png": _fifo}),
        r"FIFO",
        seconds=10,
    )
    whole = _png_bytes(grey[0])
    bad(
        "images: a truncated PNG",
        _data_folder({"a.png": _png(grey[1]), "b.png": whole[: len(whole) // 2]}),
        r"Could not decode image",
    )
    bad("images: text named .png", _data_folder({"a.png": b"not a png\n"}), r"Could not decode")
    bad("images: an empty .png", _data_folder({"a.png": b""}), r"Could not decode")
    bad(
        "images: mixed sizes",
        _data_folder({"a.png": _png(grey[0]), "b.png": _png(grey[1].T)}),
        r"Images differ in size",
    )
    bad("images: an empty folder", _data_folder({}), r"holds no PNG/JPEG images.*it is empty")
    bad(
        "images: a folder of text files",
        _data_folder({"a.txt": "x", "b.md": "y"}),
        r"holds no PNG/JPEG images",
    )
    bad(
        "images: only two folders deep",
        _data_folder({"a/b/c.png": _png(grey[0])}),
        r"immediate subfolders only",
    )
    bad(
        "images: a symlink loop named .png",
        _data_folder({"a.png": _png(grey[0]), "b.png": lambda p: os.symlink(p, p)}),
        r"b\.png",
    )
    bad(
        "images: a broken link named .png",
        _data_folder({"a.png": _png(grey[0]), "b.png": lambda p: os.symlink(p + ".gone", p)}),
        r"broken link",
    )
    bad(
        "images: a PNG header of 20000x20000",
        _data_folder({"h.png": _png_header_only(20_000, 20_000)}),
        r"too large to decode safely",
    )
    bad(
        "images: over a 40 KiB budget",
        _with_budget(
            40 / 2**20,
            _data_folder({f"{i}.png": _png(np.full((64, 64), i, np.uint8)) for i in range(4)}),
        ),
        r"over the memory budget",
    )

    # Paths
    bad("path: does not exist", lambda: _load(os.path.join(_fresh(), "none.npz")), r"Unknown data")
    bad("path: a FIFO named data.npy", _data_file("data.npy", _fifo), r"FIFO", seconds=10)
    bad("path: a FIFO named data.csv", _data_file("data.csv", _fifo), r"FIFO", seconds=10)
    bad("path: a FIFO named x-idx3-ubyte", _data_file("x-idx3-ubyte", _fifo), r"FIFO", seconds=10)
    bad("path: /dev/zero", lambda: _load("/dev/zero"), r"device", seconds=10)
    bad(
        "path: a symlink to /dev/zero named .npy",
        _data_file("z.npy", lambda p: os.symlink("/dev/zero", p)),
        r"device",
        seconds=10,
    )
    bad("path: an unsupported suffix", _data_file("x.txt", "1,2\n"), r"Unsupported data file")
    bad(
        "path: a folder named x.npz",
        _data_folder({"x.npz/.keep": ""}, "x.npz"),
        r"Unknown data|holds no",
    )
    bad(
        "path: a broken link named .npy",
        _data_file("l.npy", lambda p: os.symlink(p + "x", p)),
        r"Unknown data",
    )
    bad(
        "path: a bad budget setting",
        _with_budget("lots", _data_file("t.npy", _npy(table))),
        r"expected a positive number of GiB",
    )
    bad(
        "path: a tree 30 folders deep, no images",
        _data_folder({"/".join(["d"] * 30) + "/x.png": _png(grey[0])}),
        r"holds no PNG",
    )
    if full:
        bad(
            "npz bomb: 3.75 GiB of zeros in ~3.8 MB (15 GiB as float32)",
            _data_file("bomb.npz", _npz_bomb(3840)),
            r"over the memory budget of 4\.0 GiB",
            seconds=60,
        )
        bad(
            "idx gz bomb: 10**7 28x28 images in 7.8 MB",
            _data_file("train-images-idx3-ubyte.gz", _gzip_idx_bomb((10**7, 28, 28))),
            r"declares shape \(10000000, 28, 28\): 29\.2 GiB",
            seconds=60,
        )
        good(
            "images: 300 subfolders of one PNG each",
            _data_folder({f"c{i:03d}/a.png": _png(grey[i % 4]) for i in range(300)}),
            _data_check((5, 6, 1), 300, labels=True),
            seconds=60,
        )
        bad(
            "path: 2000 empty subfolders",
            _data_folder({f"d{i}/.keep": "" for i in range(2000)}),
            r"holds no PNG",
            seconds=60,
        )
        big = "\n".join(",".join(["1.5"] * 100) for _ in range(20_000)) + "\n"
        good("csv: 20000 rows of 100", _data_file("big.csv", big), _data_check((100,), 20_000))
        content = _png_bytes(grey[3])
        for cut in sorted({8, 30, 33, 45, len(content) // 2, len(content) - 13, len(content) - 1}):
            # Cut past its pixel data (in the last CRC or IEND), a PNG may still decode whole:
            # refused, or the same pixels.
            cases.append(
                Case(
                    f"images: PNG cut at byte {cut} of {len(content)}",
                    _data_folder({"a.png": _png(grey[0]), "b.png": content[:cut]}),
                    "either" if cut >= len(content) - 16 else "error",
                    r"Could not decode",
                    errors,
                    _data_check((5, 6, 1), 2, then=_same_images([grey[0], grey[3]])),
                )
            )
        for seed in range(10):
            for suffix in (".npy", ".npz", ".csv", "-idx3-ubyte", "-idx3-ubyte.gz"):
                bad(
                    f"garbage #{seed} as x{suffix}",
                    _data_file(f"x{suffix}", _garbage(512 + 97 * seed, seed)),
                    DATA_REFUSED,
                )
            bad(
                f"garbage #{seed} as a.png",
                _data_folder({"a.png": _garbage(300, seed)}),
                r"Could not decode",
            )
        for seed in range(8):
            full_npz = io.BytesIO()
            np.savez(full_npz, x_train=pixels[:6], x_test=pixels[6:])
            raw = full_npz.getvalue()
            cut = int(np.random.default_rng(seed).integers(1, len(raw) - 1))
            bad(f"npz: cut at byte {cut}", _data_file("c.npz", raw[:cut]), r"Could not read")
    return cases


# ------------------------------------------------------------------------------------------------
# Run folders: training.run_folder.prepare_run_dir on a damaged copy of a real one-epoch run.

RUN_CONFIG = {
    "data": "digits",
    "export": False,
    "iwae_samples": 2,
    "verbose": 0,
    "limit": 200,
    "hidden_units": [16],
}
RUN_REFUSED = (
    r"not valid UTF-8 JSON|nested too deeply|not a valid run config|is missing|has epoch|"
    r"names the weights|seed_state|not a number|has rows for epochs|has no epoch column|"
    r"line \d+ has|not a readable CSV|expected a finite number|not a regular file|is over \d+|"
    r"different config|already trained|Cannot write to the run folder|holds a JSON|is empty|"
    r"Another keras-vae-train|must name a folder|not a file of this backup folder|is not a folder"
)


@functools.cache
def _finished_run():
    """A finished one-epoch run on 200 digits (about 10 s); cases copy it before damaging it."""
    from keras_vae import training

    run_dir = os.path.join(_fresh(), "run")
    training.train({**RUN_CONFIG, "epochs": 1}, run_dir)
    return run_dir


def _snapshot(folder):
    out = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[rel] = f.read()
            else:
                out[rel] = "other"
    return out


def _prepared(damage, epochs=2, config=None, run_dir=None):
    """Copies the finished run, applies `damage(run_dir)`, opens it to resume with `epochs`;
    a refusal must leave the folder as it was (nothing written, the lock released)."""

    def run():
        from keras_vae.training import run_folder
        from keras_vae.training.config import TrainConfig

        folder = run_dir() if run_dir else os.path.join(_fresh(), "run")
        if not run_dir:
            shutil.copytree(_finished_run(), folder, symlinks=True)
        if damage:
            damage(folder)
        settings = TrainConfig.from_dict({**RUN_CONFIG, "epochs": epochs, **(config or {})})
        before = _snapshot(folder) if os.path.isdir(folder) else None
        try:
            backup_dir, lock = run_folder.prepare_run_dir(folder, settings)
        except BaseException:
            after = _snapshot(folder) if os.path.isdir(folder) else None
            if after != before:
                changed = sorted(set(before or {}) ^ set(after or {})) or "contents"
                raise AssertionError(f"the refusal changed the run folder: {changed}") from None
            raise
        lock.release()
        return folder, backup_dir

    return run


def _damage(name, content):
    """Replaces (None: removes) RUN/name with `content` (bytes, str or callable(path))."""

    def apply(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        if content is not None:
            _write(folder, name, content)

    return apply


def _resumed(epoch=1):
    def check(result):
        from keras_vae.training import run_folder

        folder, backup_dir = result
        if os.path.lexists(os.path.join(folder, run_folder.LOCK_NAME)):
            return "the lock file was left behind"
        if not os.path.isfile(os.path.join(folder, "config.json")):
            return "no config.json written"
        if epoch is not None:
            done = run_folder.check_state(backup_dir)
            if done != epoch:
                return f"the backup says {done} epochs, expected {epoch}"
        return None

    return check


def _state(**fields):
    return json.dumps({"epoch": 1, "weights": "epoch_0001.weights.npz", **fields})


def _real(name):
    with open(os.path.join(_finished_run(), name), "rb") as f:
        return f.read()


def run_folder_cases(full):
    from keras_vae.training.checks import ConfigError

    errors = (ConfigError, OSError)
    cases = []

    def bad(name, damage, refusal=RUN_REFUSED, seconds=30.0, **kwargs):
        cases.append(
            Case(name, _prepared(damage, **kwargs), "error", refusal, errors, seconds=seconds)
        )

    def good(name, damage, check, **kwargs):
        cases.append(
            Case(
                name,
                _prepared(damage, **kwargs),
                "result",
                RUN_REFUSED,
                errors,
                check,
                seconds=120.0,
            )
        )

    good("sound: resume for 2 epochs", None, _resumed())
    good("sound: the same epochs again", None, _resumed(), epochs=1)
    good(
        "sound: resumable changes (verbose, iwae_samples)",
        None,
        _resumed(),
        config={"verbose": 2, "iwae_samples": 5},
    )
    good(
        "sound: a fresh folder", None, _resumed(None), run_dir=lambda: os.path.join(_fresh(), "new")
    )
    good("sound: an existing empty folder", None, _resumed(None), run_dir=_fresh)

    def stale(folder):
        for sub in ("", "backup"):
            _write(folder, os.path.join(sub, ".tmp-abcd1234.keras"), b"half")

    def stale_removed(result):
        folder, _ = result
        left = [
            p
            for p in (".tmp-abcd1234.keras", "backup/.tmp-abcd1234.keras")
            if os.path.exists(os.path.join(folder, p))
        ]
        return f"stale temporary files left: {left}" if left else _resumed()(result)

    good("sound: a killed run's temporary files", stale, stale_removed)

    def keep_foreign(result):
        folder, _ = result
        if not os.path.exists(os.path.join(folder, ".tmp-notours.txt")):
            return "removed a file that is not a trainer's temporary file"
        return None

    good(
        "sound: a file like a temporary one is kept",
        _damage(".tmp-notours.txt", b"mine"),
        keep_foreign,
    )

    def history_plus(folder):
        path = os.path.join(folder, "history.csv")
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        row = lines[1].split(",")
        columns = lines[0].split(",")
        row[columns.index("epoch")] = "1"
        with open(path, "a", encoding="utf-8") as f:
            f.write(",".join(row) + "\n")

    good("sound: history with the interrupted epoch's row", history_plus, _resumed())
    good("sound: no untrained.json", _damage("backup/untrained.json", None), _resumed())
    # config.json
    for label, content in [
        ("not JSON", "{not json"),
        ("empty", ""),
        ("whitespace", "  \n"),
        ("a list", "[]"),
        ("null", "null"),
        ("nested 100000 deep", _deep(100_000)),
        ("binary", _garbage(600, 4)),
        ("2 MB", " " * 2_000_000 + "{}"),
        ("a string boolean", '{"data": "digits", "export": "false"}'),
        ("an unknown key", '{"data": "digits", "colour": 1}'),
        ("epochs a string", '{"epochs": "1"}'),
        ("another latent_dim", json.dumps({**RUN_CONFIG, "epochs": 1, "latent_dim": 3})),
        ("another seed", json.dumps({**RUN_CONFIG, "epochs": 1, "seed": 5})),
        ("NaN beta", json.dumps({**RUN_CONFIG, "epochs": 1}).replace("{", '{"beta": NaN, ', 1)),
    ]:
        bad(f"config.json: {label}", _damage("config.json", content))
    bad("config.json: truncated", lambda f: _damage("config.json", _real("config.json")[:40])(f))
    bad("config.json: missing", _damage("config.json", None), r"is missing, though backup/state")
    bad(
        "config.json: a directory",
        _damage("config.json", lambda p: os.mkdir(p)),
        r"not a regular file",
    )
    bad("config.json: a FIFO", _damage("config.json", _fifo), r"not a regular file", seconds=10)
    bad(
        "config.json: a symlink loop",
        _damage("config.json", lambda p: os.symlink(p, p)),
        r"not a regular file",
    )
    bad(
        "config.json: a link to /dev/zero",
        _damage("config.json", lambda p: os.symlink("/dev/zero", p)),
        r"not a regular file",
        seconds=10,
    )
    # backup/state.json
    for label, content, refusal in [
        ("garbage", "\x00\x01garbage", r"not valid UTF-8 JSON"),
        ("empty", "", r"not valid UTF-8 JSON|is empty"),
        ("a list", "[1]", r"holds a JSON list"),
        ("a number", "1", r"holds a JSON int"),
        ("nested 100000 deep", _deep(100_000, '{"a":', "}"), r"nested too deeply|not valid"),
        ("epoch '1'", _state(epoch="1"), r"has epoch '1'"),
        ("epoch 0", _state(epoch=0), r"has epoch 0"),
        ("epoch -3", _state(epoch=-3), r"has epoch -3"),
        ("epoch true", _state(epoch=True), r"has epoch True"),
        ("epoch 1.0", _state(epoch=1.0), r"has epoch 1\.0"),
        ("epoch null", _state(epoch=None), r"has epoch None"),
        (
            "epoch 10**30",
            _state(epoch=10**30, weights=f"epoch_{10**30:04d}.weights.npz"),
            r"is missing",
        ),
        (
            "epoch 2, no such weights",
            _state(epoch=2, weights="epoch_0002.weights.npz"),
            r"is missing",
        ),
        ("weights up two folders", _state(weights="../../x.weights.npz"), r"names the weights"),
        ("weights an absolute path", _state(weights="/etc/passwd"), r"names the weights"),
        ("weights a number", _state(weights=1), r"names the weights"),
        ("no weights", json.dumps({"epoch": 1}), r"names the weights None"),
        ("seed_state a string", _state(seed_state="x"), r"seed_state"),
        ("seed_state floats", _state(seed_state=[1.5, 2]), r"seed_state"),
        ("seed_state booleans", _state(seed_state=[True]), r"seed_state"),
        ("seed_state nested", _state(seed_state=[[1]]), r"seed_state"),
    ]:
        bad(f"state.json: {label}", _damage("backup/state.json", content), refusal)
    bad(
        "state.json: a directory",
        _damage("backup/state.json", lambda p: os.mkdir(p)),
        r"not a regular file",
    )
    bad(
        "state.json: a FIFO", _damage("backup/state.json", _fifo), r"not a regular file", seconds=10
    )

    def other_runs_weights(folder):
        other = os.path.join(_finished_run(), "backup", "epoch_0001.weights.npz")
        _damage("backup/state.json", json.dumps({"epoch": 1, "weights": other}))(folder)

    bad(
        "state.json: naming another run's weights",
        other_runs_weights,
        r"expected 'epoch_0001\.weights\.npz'",
    )

    def linked_weights(folder):
        other = os.path.join(_finished_run(), "backup", "epoch_0001.weights.npz")
        _damage("backup/epoch_0001.weights.npz", lambda p: os.symlink(other, p))(folder)

    bad("weights: a link to another run's file", linked_weights, r"not a file of this backup")
    bad("weights: missing", _damage("backup/epoch_0001.weights.npz", None), r"is missing")
    bad(
        "weights: a directory",
        _damage("backup/epoch_0001.weights.npz", lambda p: os.mkdir(p)),
        r"is missing",
    )

    def three_epochs(folder):
        backup = os.path.join(folder, "backup")
        shutil.copy(
            os.path.join(backup, "epoch_0001.weights.npz"),
            os.path.join(backup, "epoch_0003.weights.npz"),
        )
        _damage("backup/state.json", _state(epoch=3, weights="epoch_0003.weights.npz"))(folder)

    bad("state.json: 3 epochs done, 2 asked", three_epochs, r"already trained 3 epochs")
    # history.csv
    for label, content, refusal in [
        ("a word for a number", "epoch,loss\n0,abc\n", r"not a number"),
        ("a word for an epoch", "epoch,loss\nabc,1.0\n", r"not a number"),
        ("epoch 0.5", "epoch,loss\n0.5,1.0\n", r"not a number"),
        ("header only", "epoch,loss\n", r"has rows for epochs \[\]"),
        ("empty", "", r"has no epoch column"),
        ("no epoch column", "loss\n1.0\n", r"has no epoch column"),
        ("a ragged row", "epoch,loss\n0,1.0,7\n", r"line 2 has"),
        ("a short row", "epoch,loss,kl\n0,1.0\n", r"line 2 has"),
        ("invalid UTF-8", b"epoch,loss\n0,\xff\n", r"not a readable CSV"),
        ("a row twice", "epoch,loss\n0,1.0\n0,1.0\n", r"has rows for epochs \[0, 0\]"),
        ("epoch -1", "epoch,loss\n-1,1.0\n0,1.0\n", r"has rows for epochs \[-1, 0\]"),
        ("binary", _garbage(3000, 5), r"not a readable CSV|no epoch column|line"),
        ("a NUL byte", b"epoch,loss\n0,1\x00\n", r"not a number|not a readable CSV"),
    ]:
        bad(f"history.csv: {label}", _damage("history.csv", content), refusal)
    # Rows from epoch 1 on are the interrupted epoch's, which resumption drops: either answer.
    cases.append(
        Case(
            "history.csv: the interrupted epoch's row first",
            _prepared(_damage("history.csv", "epoch,loss\n1,1.0\n0,2.0\n")),
            "either",
            r"has rows for epochs",
            errors,
            _resumed(),
        )
    )
    bad("history.csv: missing", _damage("history.csv", None), r"is missing, though the backup")
    bad("history.csv: a directory", _damage("history.csv", lambda p: os.mkdir(p)), r"is missing")
    bad("history.csv: a FIFO", _damage("history.csv", _fifo), r"is missing", seconds=10)
    # backup/untrained.json
    for label, content in [
        ("NaN as a string", '{"negative_elbo": "NaN", "reconstruction": 1, "kl": 1}'),
        ("NaN", '{"negative_elbo": NaN, "reconstruction": 1, "kl": 1}'),
        ("Infinity", '{"negative_elbo": 1, "reconstruction": Infinity, "kl": 1}'),
        ("a list", "[]"),
        ("keys missing", '{"negative_elbo": 1}'),
        ("booleans", '{"negative_elbo": true, "reconstruction": 1, "kl": 1}'),
        ("garbage", _garbage(100, 6)),
        ("nested 100000 deep", _deep(100_000)),
    ]:
        bad(f"untrained.json: {label}", _damage("backup/untrained.json", content))
    bad(
        "untrained.json: a directory",
        _damage("backup/untrained.json", lambda p: os.mkdir(p)),
        r"not a regular file",
    )
    bad(
        "untrained.json: a broken link",
        _damage("backup/untrained.json", lambda p: os.symlink(p + ".gone", p)),
        r"not a regular file",
    )
    # Folders where files should be, and the other way round.
    for name in ("backup", "samples", "logs"):
        bad(f"{name}: a file, not a folder", _damage(name, b"not a folder"), r"is not a folder")
    bad(
        "backup: a link to a file",
        _damage("backup", lambda p: os.symlink("/etc/hostname", p)),
        r"is not a folder",
    )
    bad("backup: a FIFO", _damage("backup", _fifo), r"is not a folder", seconds=10)
    bad(
        "samples: a file in a fresh folder",
        None,
        r"is not a folder",
        run_dir=lambda: os.path.dirname(_write(_fresh(), "run/samples", b"x")),
    )
    bad(
        "run folder: a file",
        None,
        r"Cannot write to the run folder",
        run_dir=lambda: _write(_fresh(), "run", b"a file"),
    )
    bad(
        "run folder: inside a file",
        None,
        r"Cannot write to the run folder",
        run_dir=lambda: os.path.join(_write(_fresh(), "f", b"x"), "run"),
    )
    bad(
        "run folder: a dangling link",
        None,
        r"Cannot write to the run folder",
        run_dir=lambda: _write(_fresh(), "run", lambda p: os.symlink(p + ".gone", p)),
    )

    def locked(folder):
        from keras_vae.training import run_folder

        _held.append(run_folder.RunLock(folder))  # held by "another trainer" for the case

    _held = []

    def release_after(run):
        def guarded():
            try:
                return run()
            finally:
                while _held:
                    _held.pop().release()

        return guarded

    cases.append(
        Case(
            "lock: held by another trainer",
            release_after(_prepared(locked)),
            "error",
            r"Another keras-vae-train \(pid \d+\)",
            errors,
        )
    )

    def open_empty():
        import tensorflow as tf

        from keras_vae.training import run_folder
        from keras_vae.training.config import TrainConfig

        run_folder.open_run_folder("  ", tf.distribute.get_strategy(), TrainConfig())

    cases.append(Case("run_dir: blank", open_empty, "error", r"run_dir must name a folder", errors))
    if full:
        bad(
            "history.csv: 65 MB",
            _damage("history.csv", b"epoch,loss\n" + b"0,1\n" * 17_000_000),
            r"is over \d+ bytes",
            seconds=60,
        )
        bad("config.json: 1 MiB + 1", _damage("config.json", " " * (2**20 + 1)), r"is over")
        for seed in range(6):
            for name in (
                "config.json",
                "backup/state.json",
                "history.csv",
                "backup/untrained.json",
            ):
                raw = _real(name)
                cut = int(np.random.default_rng(seed).integers(0, len(raw) - 2))
                bad(f"{name}: cut at byte {cut}", _damage(name, raw[:cut]), RUN_REFUSED)
    return cases


# ------------------------------------------------------------------------------------------------
# .keras files through keras-vae-sample's loader (model_kind, then KerasModel).

KERAS_FILE = os.path.join(helpers.REPO, "tests", "data", "mlp_bernoulli.keras")
CONV_FILE = os.path.join(helpers.REPO, "tests", "data", "conv_gaussian_learned.keras")
KERAS_REFUSED = (
    r"cannot load .* as a keras-vae model|Not loading it|expected a \.keras file|no such model|"
    r"without model\.keras|not a regular file|expected a keras_vae\.VAE|nested too deeply|"
    r"config\.json is [\d,]+ bytes"
)


@functools.cache
def _default_file():
    """An untrained VAE of the default MLP (256, 128) on 8x8 with latent_dim 2, saved."""
    import keras

    import keras_vae

    keras.utils.set_random_seed(0)
    path = os.path.join(_fresh(), "default.keras")
    keras_vae.build_vae((8, 8, 1), latent_dim=2, seed=0).save(path)
    return path


LOADER = r"cannot load .* as a keras-vae model: .*"
# Keras' words for weights that do not fit the layers the config builds.
WRONG_WEIGHTS = r"A total of \d+ objects could not be loaded|of layer '\w+' is incompatible"


def _keras_model(path):
    from keras_vae.training import sample

    kind, file = sample.model_kind(path)
    if kind != "keras":
        raise AssertionError(f"{path!r} taken for a {kind}")
    return sample.KerasModel(file)


def _members(source=KERAS_FILE):
    with zipfile.ZipFile(source) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(members, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _edited(edit, source=KERAS_FILE):
    """The .keras file's bytes with `edit(config)` applied to its config.json (in place)."""
    members = _members(source)
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    return _zip(members)


def _walk(node, visit):
    if isinstance(node, dict):
        visit(node)
        for value in list(node.values()):
            _walk(value, visit)
    elif isinstance(node, list):
        for item in node:
            _walk(item, visit)


def _latent(latent_dim):
    """Turns the file's latent size 2 into `latent_dim`: the encoder's last Dense (4 units) and
    every shape [None, 2]."""

    def edit(config):
        def visit(node):
            c = node.get("config")
            if node.get("class_name") == "Dense" and isinstance(c, dict) and c.get("units") == 4:
                c["units"] = 2 * latent_dim
            for key, value in node.items():
                if value == [None, 2]:
                    node[key] = [None, latent_dim]

        _walk(config, visit)

    return edit


def _dense_units(units):
    def edit(config):
        def visit(node):
            c = node.get("config")
            if node.get("class_name") == "Dense" and isinstance(c, dict) and c.get("units") == 16:
                c["units"] = units

        _walk(config, visit)

    return edit


def _replace_class(old, new, module=None):
    def edit(config):
        def visit(node):
            if node.get("class_name") == old:
                # Keras resolves a registered name first: change all three.
                node["class_name"] = node["registered_name"] = new
                if module is not None:
                    node["module"] = module

        _walk(config, visit)

    return edit


def _lambda_layer(marker):
    """Puts a Lambda layer whose code would create `marker` in place of the encoder's Flatten."""
    code = compile(f"open({marker!r}, 'w').close()", "<fuzz>", "exec")
    payload = base64.b64encode(marshal.dumps(code)).decode()

    def edit(config):
        def visit(node):
            if node.get("class_name") == "Flatten":
                node["class_name"] = "Lambda"
                node["module"] = "keras.layers"
                node["config"] = {
                    **node["config"],
                    "function": {
                        "class_name": "__lambda__",
                        "config": {"code": payload, "defaults": None, "closure": None},
                    },
                    "output_shape": [64],
                    "arguments": {},
                }

        _walk(config, visit)

    return edit


def _dense_activations(activation):
    """A config edit that sets every Dense layer's activation to the serialized `activation`."""

    def edit(config):
        def visit(node):
            c = node.get("config")
            if node.get("class_name") == "Dense" and isinstance(c, dict):
                c["activation"] = dict(activation)

        _walk(config, visit)

    return edit


# Every Dense layer's activation serialized as the function os.system.
_os_function = _dense_activations(
    {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}
)


def _activation_code(marker):
    """An activation naming a callable of `os` with `marker` as its argument."""
    return _dense_activations(
        {
            "module": "os",
            "class_name": "system",
            "config": f"touch {marker}",
            "registered_name": "system",
        }
    )


def _keras_case_file(make, name="model.keras"):
    """Writes `make` (bytes, or callable(marker path) -> bytes) to a fresh folder's `name` and
    loads it; a marker file that tampered code would create must not exist afterwards."""

    def run():
        folder = _fresh()
        marker = os.path.join(folder, "pwned")
        path = _write(folder, name, make(marker) if callable(make) else make)
        try:
            return _keras_model(path)
        finally:
            if os.path.exists(marker):
                raise AssertionError("code in the .keras file ran when it was loaded")

    return run


def _keras_path(make_path):
    """Loads the path `make_path()` returns (a folder, a FIFO, a link...)."""
    return lambda: _keras_model(make_path())


def _folder_named(name):
    path = os.path.join(_fresh(), name)
    os.mkdir(path)
    return path


def _loaded(latent_dim, data_shape):
    def check(model):
        if model.latent_dim != latent_dim or model.data_shape != data_shape:
            return f"latent_dim {model.latent_dim}, data_shape {model.data_shape}"
        x = model.sample(3, 0)
        if x.shape != (3, *data_shape) or not np.isfinite(x).all():
            return f"samples of shape {x.shape} or not finite"
        again = _keras_model(KERAS_FILE if data_shape == (8, 8, 1) else CONV_FILE).sample(3, 0)
        if not np.allclose(x, again, atol=1e-5):
            return "samples differ from the original file's (weights not the same?)"
        return None

    return check


def keras_file_cases(full):
    from keras_vae.training.sample import UsageError

    errors = (UsageError,)
    cases = []

    def bad(name, make, refusal=KERAS_REFUSED, seconds=60.0):
        cases.append(Case(name, _keras_case_file(make), "error", refusal, errors, seconds=seconds))

    def good(name, make, check):
        cases.append(
            Case(name, _keras_case_file(make), "result", KERAS_REFUSED, errors, check, seconds=60.0)
        )

    with open(KERAS_FILE, "rb") as f:
        original = f.read()
    good("sound: the MLP file", original, _loaded(2, (8, 8, 1)))
    good(
        "sound: re-zipped uncompressed",
        lambda m: _zip(_members(), zipfile.ZIP_STORED),
        _loaded(2, (8, 8, 1)),
    )
    cases.append(
        Case(
            "sound: a run folder holding model.keras",
            _keras_path(lambda: os.path.dirname(_write(_fresh(), "run/model.keras", original))),
            "result",
            KERAS_REFUSED,
            errors,
            _loaded(2, (8, 8, 1)),
            60.0,
        )
    )
    not_zip = r"is not a \.keras file \(not a zip archive\)"
    bad("an empty file", b"", not_zip)
    bad("a text file", b"hello, I am not a zip\n", not_zip)
    bad("binary garbage", _garbage(5000, 7), not_zip)
    for fraction in (0.1, 0.5, 0.9, 0.99):
        bad(f"truncated to {fraction:.0%}", original[: int(len(original) * fraction)], not_zip)
    bad("the first 100 bytes", original[:100], not_zip)
    bad(
        "no config.json",
        lambda m: _zip({k: v for k, v in _members().items() if k != "config.json"}),
        LOADER + r"There is no item named 'config\.json'",
    )
    bad(
        "no weights",
        lambda m: _zip({k: v for k, v in _members().items() if "weights" not in k}),
        LOADER + r"Expected a model\.weights\.h5",
    )
    bad(
        "config.json not JSON",
        lambda m: _zip({**_members(), "config.json": b"{"}),
        LOADER + r"Expecting property name",
    )
    bad(
        "config.json a list",
        lambda m: _zip({**_members(), "config.json": b"[]"}),
        LOADER + r"KerasSaveable.*list",
    )
    bad(
        "config.json nested 100000 deep",
        lambda m: _zip(
            {
                **_members(),
                "config.json": _deep(100_000, '{"a":', "}").replace('{"a":}', "1").encode(),
            }
        ),
    )
    bad(
        "config.json lists nested 100000 deep",
        lambda m: _zip({**_members(), "config.json": _deep(100_000).encode()}),
    )
    bad(
        "latent_dim 10**7 (a 58 GB model)",
        lambda m: _edited(_latent(10**7), _default_file()),
        r"Not loading it",
    )
    bad("latent_dim 10**8 (a 19 GB model)", lambda m: _edited(_latent(10**8)), r"Not loading it")
    bad(
        "latent_dim 10**6 (weights of the wrong shape)",
        lambda m: _edited(_latent(10**6)),
        LOADER + WRONG_WEIGHTS,
    )
    bad(
        "latent_dim 3 (weights of the wrong shape)",
        lambda m: _edited(_latent(3)),
        LOADER + WRONG_WEIGHTS,
    )
    bad("hidden units 10**9", lambda m: _edited(_dense_units(10**9)), r"Not loading it")
    bad(
        "hidden units 17 (weights of the wrong shape)",
        lambda m: _edited(_dense_units(17)),
        LOADER + WRONG_WEIGHTS,
    )
    bad(
        "the conv file's weights in the MLP file",
        lambda m: _zip({**_members(), "model.weights.h5": _members(CONV_FILE)["model.weights.h5"]}),
        LOADER + WRONG_WEIGHTS,
    )
    bad(
        "an unknown layer class",
        lambda m: _edited(_replace_class("Dense", "NoSuchLayer")),
        LOADER + r"Could not deserialize 'keras\.layers\.NoSuchLayer'",
    )
    bad(
        "an unknown model class",
        lambda m: _edited(_replace_class("VAE", "NotAVAE")),
        LOADER + r"Could not locate class 'NotAVAE'",
    )
    bad(
        "a Keras Sequential, not a VAE",
        lambda m: _zip(
            {
                **_members(),
                "config.json": json.dumps(
                    {
                        "module": "keras",
                        "class_name": "Sequential",
                        "config": {"name": "s", "layers": []},
                    }
                ).encode(),
            }
        ),
        r"holds a Sequential; expected a keras_vae\.VAE",
    )
    bad(
        "a class from the os module",
        lambda m: _edited(_replace_class("VAE", "system", "os")),
        LOADER + r"Could not locate class 'system'",
    )
    bad(
        "a Lambda layer carrying code",
        lambda marker: _edited(_lambda_layer(marker)),
        LOADER + r"Requested the deserialization of a `Lambda` layer",
    )
    bad(
        "an activation naming os.system",
        lambda marker: _edited(_activation_code(marker)),
        LOADER + r"Expected 'config' to be a dict for system",
    )
    bad(
        "an activation that is the function os.system",
        lambda m: _edited(_os_function),
        LOADER + r"Could not locate function 'system'",
    )
    bad(
        "weights that are garbage",
        lambda m: _zip({**_members(), "model.weights.h5": _garbage(5000)}),
        LOADER + r"file signature not found",
    )
    bad(
        "weights cut in half",
        lambda m: _zip({**_members(), "model.weights.h5": _members()["model.weights.h5"][:30000]}),
        LOADER + r"truncated file",
    )
    bad("an HDF5 file, not a zip", lambda m: _members()["model.weights.h5"], not_zip)
    for label, make in [
        ("a FIFO named m.keras", lambda: _write(_fresh(), "m.keras", _fifo)),
        (
            "a link to /dev/zero named z.keras",
            lambda: _write(_fresh(), "z.keras", lambda p: os.symlink("/dev/zero", p)),
        ),
        (
            "a symlink loop named l.keras",
            lambda: _write(_fresh(), "l.keras", lambda p: os.symlink(p, p)),
        ),
        ("an empty folder named x.keras", lambda: _folder_named("x.keras")),
    ]:
        cases.append(Case(label, _keras_path(make), "error", KERAS_REFUSED, errors, seconds=10))
    cases.append(
        Case(
            "a missing file",
            lambda: _keras_model(os.path.join(_fresh(), "no.keras")),
            "error",
            r"no such model file",
            errors,
        )
    )
    cases.append(
        Case(
            "a .h5 suffix",
            lambda: _keras_model(_write(_fresh(), "m.h5", original)),
            "error",
            r"expected a \.keras file",
            errors,
        )
    )
    bad(
        "config.json of 17 MB",
        lambda m: _zip(
            {**_members(), "config.json": b" " * (17 << 20) + _members()["config.json"]}
        ),
        r"config\.json is [\d,]+ bytes",
    )
    if full:
        with open(CONV_FILE, "rb") as f:
            good("sound: the conv Gaussian file", f.read(), _conv_check())
        bad(
            "weights inflating to 4 GiB of zeros",
            lambda m: _bomb_weights(),
            r"model\.weights\.h5 declares [\d,]+ bytes.*Not loading it",
            seconds=120,
        )
        for seed in range(10):
            cut = int(np.random.default_rng(seed).integers(30, len(original) - 30))
            bad(f"cut at byte {cut}", original[:cut], not_zip)
        for seed in range(6):
            flipped = bytearray(original)
            position = int(np.random.default_rng(100 + seed).integers(0, len(flipped)))
            flipped[position] ^= 0xFF
            cases.append(
                Case(
                    f"a byte flipped at {position}",
                    _keras_case_file(bytes(flipped)),
                    "either",
                    KERAS_REFUSED,
                    errors,
                    _loaded(2, (8, 8, 1)),
                    60.0,
                )
            )
    return cases


def _conv_check():
    def check(model):
        x = model.sample(2, 0)
        if x.shape[0] != 2 or x.shape[1:] != model.data_shape or not np.isfinite(x).all():
            return f"samples of shape {x.shape} for data_shape {model.data_shape}"
        return None

    return check


def _bomb_weights():
    """The MLP file with model.weights.h5 replaced by a member that inflates to 4 GiB - 1 MiB
    of zeros (4 MB on disk)."""
    members = _members()
    del members["model.weights.h5"]
    zero_mib = 4095
    return _append_raw_member(
        _zip(members), "model.weights.h5", _deflate_zeros(b"", zero_mib), zero_mib << 20
    )


def _append_raw_member(archive_bytes, name, deflated, size):
    """`archive_bytes` (a zip without comment or zip64) with one more deflated member whose
    header declares `size` bytes and a CRC of 0."""
    end_offset = archive_bytes.rindex(b"PK\x05\x06")
    _, _, _, _, count, cd_size, cd_offset, _ = struct.unpack(
        "<IHHHHIIH", archive_bytes[end_offset : end_offset + 22]
    )
    entries = archive_bytes[:cd_offset]
    central = archive_bytes[cd_offset : cd_offset + cd_size]
    encoded = name.encode()
    offset = len(entries)
    local = (
        struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, 0, len(deflated), size, len(encoded), 0
        )
        + encoded
    )
    entry = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            0,
            0,
            0,
            len(deflated),
            size,
            len(encoded),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        + encoded
    )
    body = entries + local + deflated
    central += entry
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, count + 1, count + 1, len(central), len(body), 0
    )
    return body + central + end
