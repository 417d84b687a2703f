"""Checks and flag parsers of the training config's fields: each raises `ConfigError` (or
argparse's type error, for a flag) with one line that says what was received and expected."""

import argparse
import json
import math
import os
import re
import typing

# The names training.data.LOADERS knows (tests/test_training_data.py checks they agree).
NAMED_DATA = ("digits", "digits28", "photos64", "ring", "mnist", "fashion_mnist")
LOCAL_SUFFIXES = (".npz", ".npy", ".csv", "-idx3-ubyte", "-idx3-ubyte.gz")


class ConfigError(ValueError):
    """A flag or config value is invalid; the message is one line that says how to fix it."""


def parse_sigma(text):
    """`--sigma`: a number (checked by `TrainConfig.validate`) or "learned"."""
    if text in ("learned", "calibrated"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number, 'learned' or 'calibrated'; received {text!r}"
        ) from None


def parse_int(text):
    """An integer flag: ASCII digits with an optional sign. Python's `int` also takes "1_0"
    (ten), " 7 " and other scripts' digits, which in a flag are a typo rather than meant: `--version
    1_0` would write the version folder 10."""
    try:
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
    except ValueError:  # over Python's 4300-digit limit for int()
        pass
    shown = text if len(text) <= 40 else f"{text[:20]}...{text[-10:]} ({len(text)} characters)"
    raise argparse.ArgumentTypeError(
        f"invalid int value: {shown!r} (expected ASCII digits, e.g. 7 or -1)"
    )


def parse_units(text):
    """`--hidden-units 400,200`, `--filters 32,64`: comma-separated positive integers."""
    try:
        units = tuple(int(part) for part in text.split(","))
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, e.g. 400 or 256,128; received {text!r}"
        )
    return units


def check_units(name, value):
    """A tuple of positive ints from a tuple or a JSON list (config.json); ConfigError else."""
    ok = isinstance(value, (list, tuple)) and len(value) > 0
    ok = ok and all(isinstance(u, int) and not isinstance(u, bool) and u >= 1 for u in value)
    if not ok:
        raise ConfigError(
            f"{name} must be a list of positive integers, e.g. [256, 128]; received {value!r}."
        )
    return tuple(value)


def check_data(data):
    if not isinstance(data, str) or not data:
        raise ConfigError(f"data must be a name or a path; received {data!r}.")
    if data in NAMED_DATA:
        return
    looks_like_path = os.sep in data or "." in os.path.basename(data) or data.endswith("ubyte")
    if not looks_like_path and not os.path.exists(data):
        raise ConfigError(
            f"Unknown data {data!r}; expected one of {', '.join(NAMED_DATA)} or a path to "
            ".npz, .npy, .csv, IDX files or a folder of images."
        )
    if not os.path.exists(data):
        raise ConfigError(f"Data path {data!r} does not exist.")
    if os.path.isfile(data) and not data.lower().endswith(LOCAL_SUFFIXES):
        raise ConfigError(
            f"Unsupported data file {data!r}; expected .npz, .npy, .csv or an IDX file "
            "(*-idx3-ubyte or *-idx3-ubyte.gz), or a folder of PNG/JPEG images."
        )


def check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}; expected one of {', '.join(choices)}.")


def check_int(name, value, minimum, maximum=None):
    """An int (not a bool) >= `minimum`, and <= `maximum` when given; ConfigError else."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if maximum is not None and ok and value > maximum:
        raise ConfigError(
            f"{name} must be an integer from {minimum} to {maximum}; received {value!r}."
        )
    if not ok:
        raise ConfigError(
            f"{name} must be an integer >= {minimum}; received {value!r}{_type_of(value)}."
        )


def _type_of(value):
    # A wrong type is named: 2.0 and "2" print like numbers.
    return "" if type(value) in (int, float) else f" ({type(value).__name__})"


def _finite(value):
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range, e.g. 10**400 from a JSON file
        return False


# The float32 range the networks compute in: a setting beyond it (a free_bits of 1e308, a sigma
# of 1e-300) becomes inf or 0 in the graph, and the first step's NaN loss would be blamed on the
# learning rate.
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32


def check_float(name, value, minimum, strict=False, hint=""):
    """A finite int or float (not a bool) >= `minimum` (> with `strict`) that float32 holds:
    at most `FLOAT32_MAX`, and for a `strict` bound of 0 at least `FLOAT32_TINY`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = ">" if strict else ">="
        hint = f" {hint}" if hint else ""
        raise ConfigError(
            f"{name} must be a number {bound} {minimum}{hint}; received {value!r}{_type_of(value)}."
        )
    if abs(value) > FLOAT32_MAX or (strict and minimum == 0 and value < FLOAT32_TINY):
        raise ConfigError(
            f"{name} must be a number from {FLOAT32_TINY if strict else minimum:g} to "
            f"{FLOAT32_MAX:g}, the float32 range the networks compute in; received {value!r}."
        )


# What each annotation accepts, and how the error names it. An int is a number too (JSON writes
# 1.0 as 1 in hand-made files), but a bool is neither, and a float is not an int.
_TYPE_NAMES = {
    bool: "true or false (a JSON boolean, not a string)",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def _accepts(kind, value):
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_types(config):
    """Each field of the dataclass `config` holds a value of its annotated type; ConfigError
    else. `--config` files and `train(dict)` bypass argparse, so `"binarize": "false"` would
    otherwise be a true string, and `"epochs": 2.5` a float that Keras rejects later."""
    import dataclasses

    for field in dataclasses.fields(config):
        kinds = typing.get_args(field.type) or (field.type,)
        value = getattr(config, field.name)
        if value is None and type(None) in kinds:
            continue
        kinds = [k for k in kinds if k in _TYPE_NAMES]
        if not kinds or any(_accepts(k, value) for k in kinds):
            continue  # tuples are check_units' to check
        expected = " or ".join(_TYPE_NAMES[k] for k in kinds)
        if type(None) in (typing.get_args(field.type) or ()):
            expected += " or null"
        raise ConfigError(
            f"{field.name} must be {expected}; received {value!r} ({type(value).__name__}). "
            f"Fix it in the config (e.g. {field.name}: {_example(kinds[0], field.default)})."
        )


def _example(kind, default):
    if isinstance(default, kind) and default is not None:
        return json.dumps(default)
    return {bool: "false", int: "1", float: "0.5", str: '"text"'}[kind]


# config.json files are a few hundred bytes; a cap keeps `--config /dev/zero` (endless) or a
# huge file from being read whole.
MAX_JSON_BYTES = 1 << 20


def read_json_file(path, what, max_bytes=MAX_JSON_BYTES):
    """The JSON value in the file `path`, read to at most `max_bytes`; ConfigError (one line
    that names `what`, e.g. "--config 'a.json'") when it is unreadable, too big, not UTF-8 JSON,
    or nested too deeply for Python's parser."""
    try:
        # Opened without blocking: opening a FIFO that no process writes waits for ever, while a
        # read of one whose writer is gone (or never came) ends at once, empty.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            os.set_blocking(fd, True)
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError(f"Cannot read {what}: {e.strerror or e}.") from None
    if len(raw) > max_bytes:
        raise ConfigError(
            f"{what} is over {max_bytes} bytes; expected a small JSON file such as a run's "
            "config.json."
        )
    if not raw.strip():
        raise ConfigError(f"{what} is empty; expected a JSON object such as a run's config.json.")
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ConfigError(
            f"{what} is JSON nested too deeply to read; expected a flat object."
        ) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"{what} is not valid UTF-8 JSON ({' '.join(str(e).split())}).") from None
