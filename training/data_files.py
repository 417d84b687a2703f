"""Local data files in: `.npz`, `.npy` and `.csv`, read defensively; the memory budget.

Every refusal is a `DataError`, one line that names the file. Sizes a file declares (an `.npy`
header's shape, the IDX dimensions) are checked against the file's own length and against
`memory_budget()` before anything that size is allocated: a small file that claims, or inflates
to, gigabytes is refused in milliseconds rather than exhausting memory. IDX files
(`data_idx.py`) and image folders (`data_images.py`) are read under the same budget.
"""

import array
import csv
import math
import os
import stat

import numpy as np

# The data set lives in memory as float32, and at the peak about three times over (the loaded
# array, the split's copies, tf.data's tensor), so 4 GiB of data asks some 12 GiB: past most
# laptops, and 18 times MNIST (220 MB). A fixed number rather than a fraction of this machine's
# memory, so that one file is accepted or refused alike on a laptop, a CI runner and a shared
# server (whose free memory is not its total); a bigger machine raises it with BUDGET_ENV.
MEMORY_BUDGET_BYTES = 4 * 2**30
BUDGET_ENV = "KERAS_VAE_DATA_BUDGET_GIB"
FLOAT32_BYTES = 4


class DataError(ValueError):
    """The data could not be read or is not usable; the message says what to do."""


def memory_budget():
    """Bytes of float32 data a data set may take: `MEMORY_BUDGET_BYTES`, or `BUDGET_ENV` GiB."""
    raw = os.environ.get(BUDGET_ENV)
    if raw is None:
        return MEMORY_BUDGET_BYTES
    try:
        gib = float(raw)
    except ValueError:
        gib = math.nan
    if not (math.isfinite(gib) and gib > 0):
        raise DataError(
            f"{BUDGET_ENV}={raw!r}; expected a positive number of GiB (e.g. 16). Fix or unset it."
        )
    return int(gib * 2**30)


def size_text(num_bytes):
    """`num_bytes` for a person: "7.3 GiB", "512 bytes"."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} bytes"


def claim_memory(what, num_values, spent=0):
    """`spent` plus the float32 bytes of `num_values` values; `DataError` past the budget.

    `what` opens the message and names the file (e.g. "'x.npz' declares shape (10, 28, 28)").
    """
    need = spent + num_values * FLOAT32_BYTES
    budget = memory_budget()
    if need > budget:
        raise DataError(
            f"{what}: {size_text(need)} as float32, over the memory budget of "
            f"{size_text(budget)}. Train on a subset (fewer or smaller examples), or raise the "
            f"budget with {BUDGET_ENV}=<GiB> if this machine has the memory."
        )
    return need


def check_regular_file(path):
    """Refuses a FIFO, socket or device: opening one blocks for ever or reads without end.

    Refused rather than skipped, so that what is loaded is never silently less than what was
    pointed at.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise DataError(
            f"Could not open {path!r} ({type(e).__name__}: {e.strerror}); is it a broken link? "
            "Remove or replace it."
        ) from None
    if stat.S_ISREG(mode):
        return
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    raise DataError(
        f"{path!r} is {kind}, not a regular file; reading it could block for ever. Remove it "
        "or point --data at a regular file."
    )


# ---------------------------------------------------------------------------------------------
# NumPy files.

NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _npy_header(fp, path):
    """`(shape, dtype, header_bytes)` of the `.npy` stream `fp`, reading only its header."""
    version = np.lib.format.read_magic(fp)
    if version not in NPY_HEADER_READERS:
        # Version 3.0 exists only for structured arrays with non-Latin-1 field names.
        raise DataError(
            f"{path!r} is a .npy of format version {version[0]}.{version[1]}, which only "
            "structured arrays use; expected a numeric array. Write it with np.save(path, x)."
        )
    shape, _, dtype = NPY_HEADER_READERS[version](fp)
    return shape, dtype, fp.tell()


def _check_npy_size(where, shape, dtype, header_bytes, total_bytes):
    """Refuses a header that declares Python objects (loading them runs pickle) or more data
    than its file (or zip member) holds."""
    if dtype.hasobject:
        raise DataError(
            f"{where} holds Python objects (dtype {dtype}), which only pickle can load, and a "
            "pickle can run code: not loaded. Save a numeric array, e.g. "
            "np.save(path, x.astype('float32'))."
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared > total_bytes - header_bytes:
        raise DataError(
            f"{where} declares an array of shape {shape} ({dtype}, {size_text(declared)}) but "
            f"holds {size_text(max(total_bytes - header_bytes, 0))} of data; the file is "
            "truncated or corrupt. Write it again with np.save/np.savez."
        )
    return math.prod(shape)


def _npz_member_values(archive, key, path):
    """Values the array `key` of the open `.npz` declares, checked against its zip member."""
    name = key + ".npy" if key + ".npy" in archive.zip.namelist() else key
    with archive.zip.open(name) as member:
        shape, dtype, header = _npy_header(member, path)
    where = f"{path!r} (array {key!r})"
    return _check_npy_size(where, shape, dtype, header, archive.zip.getinfo(name).file_size)


def _npz_keys(keys, path):
    """The arrays to load and the layout they make: ("split" or "single", [keys])."""
    if {"x_train", "x_test"} <= keys:
        return "split", [k for k in ("x_train", "x_test", "y_train", "y_test") if k in keys]
    if "x_train" in keys or "x" in keys:
        x, y = ("x_train", "y_train") if "x_train" in keys else ("x", "y")
        return "single", [x] + ([y] if y in keys else [])
    raise DataError(
        f"{path!r} holds arrays {sorted(keys)}; expected 'x_train' and 'x_test' (the Keras "
        "mnist.npz layout, labels 'y_train'/'y_test' optional), or 'x' (labels 'y' optional)."
    )


def load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            layout, wanted = _npz_keys(set(archive.files), path)
            values = sum(_npz_member_values(archive, key, path) for key in wanted)
            claim_memory(f"{path!r} declares {values:,} values in {', '.join(wanted)}", values)
            arrays = {k: archive[k] for k in wanted}
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile and numpy raise many types on bad bytes
        # (BadZipFile, EOFError, zlib.error, NotImplementedError for an unknown compression,
        # RuntimeError for an "encrypted" flag, ...): all mean the same to the user.
        raise DataError(
            f"Could not read {path!r} as .npz ({type(e).__name__}: {e}); the file is truncated, "
            "corrupt or not a NumPy archive. Write it with np.savez(path, x_train=..., "
            "x_test=...)."
        ) from None
    if layout == "split":
        return {
            "x_train": arrays["x_train"],
            "x_test": arrays["x_test"],
            "y_train": arrays.get("y_train"),
            "y_test": arrays.get("y_test"),
            "kind": None,
        }
    x, *labels = wanted
    return {"x": arrays[x], "y": arrays[labels[0]] if labels else None, "kind": None}


def load_npy(path):
    try:
        with open(path, "rb") as f:
            shape, dtype, header = _npy_header(f, path)
            values = _check_npy_size(repr(path), shape, dtype, header, os.fstat(f.fileno()).st_size)
            claim_memory(f"{path!r} declares shape {shape}", values)
            f.seek(0)
            x = np.load(f, allow_pickle=False)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - see load_npz
        raise DataError(
            f"Could not read {path!r} as .npy ({type(e).__name__}: {e}); the file is truncated "
            "or corrupt. Write it with np.save(path, array)."
        ) from None
    return {"x": x, "y": None, "kind": None}


# ---------------------------------------------------------------------------------------------
# CSV.


def load_csv(path):
    # Numbers go straight into a float64 array.array: 8 bytes each, where lists of Python floats
    # took ~32, so the budget check below bounds what reading costs too.
    values, widths, budget_values = array.array("d"), set(), memory_budget() // FLOAT32_BYTES
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which would otherwise
        # glue itself to the first field, make a numeric first row look like a header, and lose it.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for line_number, row in enumerate(reader, start=1):
                if not row or all(not cell.strip() for cell in row):
                    continue
                try:
                    numbers = [float(cell) for cell in row]
                except ValueError:
                    if line_number == 1 and not values:
                        continue  # a header row
                    raise DataError(
                        f"{path!r} line {line_number}: expected numbers separated by commas; "
                        f"received {','.join(row)[:80]!r}."
                    ) from None
                values.extend(numbers)
                widths.add(len(numbers))
                if len(values) > budget_values:
                    claim_memory(
                        f"{path!r} holds {len(values):,} numbers by line {line_number}", len(values)
                    )
    except UnicodeDecodeError:
        raise DataError(
            f"{path!r} is not a text .csv file (it does not decode as UTF-8)."
        ) from None
    except csv.Error as e:
        # e.g. a field longer than csv.field_size_limit() (131,072 characters): no number is.
        raise DataError(
            f"{path!r} line {reader.line_num}: could not read it as CSV ({e}); expected numbers "
            "separated by commas."
        ) from None
    if len(widths) > 1:
        raise DataError(
            f"{path!r} has rows of different lengths {sorted(widths)}; every row must hold the "
            "same number of columns."
        )
    if not values:
        return {"x": np.zeros((0,)), "y": None, "kind": "vector"}
    x = np.frombuffer(values, dtype="float64").reshape(-1, widths.pop())
    return {"x": x, "y": None, "kind": "vector"}
