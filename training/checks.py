"""Checks and flag parsers of the training config's fields: each raises `ConfigError` (or
argparse's type error, for a flag) with one line that says what was received and expected."""

import argparse
import math
import os

# The names training.data.LOADERS knows (tests/test_training_data.py checks they agree).
NAMED_DATA = ("digits", "digits28", "photos64", "ring", "mnist", "fashion_mnist")
LOCAL_SUFFIXES = (".npz", ".npy", ".csv", "-idx3-ubyte", "-idx3-ubyte.gz")


class ConfigError(ValueError):
    """A flag or config value is invalid; the message is one line that says how to fix it."""


def parse_sigma(text):
    """`--sigma`: a number (checked by `TrainConfig.validate`) or "learned"."""
    if text == "learned":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'learned'; received {text!r}"
        ) from None


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


def check_int(name, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; received {value!r}.")


def check_float(name, value, minimum, strict=False, hint=""):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = ">" if strict else ">="
        hint = f" {hint}" if hint else ""
        raise ConfigError(f"{name} must be a number {bound} {minimum}{hint}; received {value!r}.")
