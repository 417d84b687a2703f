"""Bad data, fuzzed: every broken input is a clear `DataError` (a ValueError naming the file and
the problem), or, where the corruption is harmless, exactly the original data. Never a hang, a
crash, another exception type, or a silently different data set.
"""

import gzip
import io
import os
import struct
import zipfile

import hypothesis
import keras
import numpy as np
import pytest
import reliability_helpers as helpers
import tensorflow as tf
from hypothesis import strategies as st
from PIL import Image

import keras_vae
from keras_vae.training.data import DataError, load_dataset

FUZZ = hypothesis.settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
IMAGES = np.random.default_rng(0).integers(0, 256, (6, 4, 4), dtype=np.uint8)


def idx_bytes(images):
    n, rows, cols = images.shape
    return struct.pack(">iiii", 0x803, n, rows, cols) + images.tobytes()


def npz_bytes(compressed=False, **arrays):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def load_or_data_error(path):
    """The loaded data set, or None when it raised DataError; any other exception propagates."""
    try:
        return load_dataset(path)
    except DataError as e:
        assert os.path.basename(path) in str(e), f"the message does not name the file: {e}"
        return None


def assert_same(a, b):
    assert a.x_train.shape == b.x_train.shape and a.x_test.shape == b.x_test.shape
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)


# ------------------------------------------------------------------------------------------------
# IDX.


@FUZZ
@hypothesis.given(gz=st.booleans(), cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_idx_is_a_data_error(tmp_path_factory, gz, cut):
    content = idx_bytes(IMAGES)
    if gz:
        content = gzip.compress(content, mtime=0)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = write(tmp_path_factory.mktemp("idx"), name, content[: int(cut * len(content))])
    with pytest.raises(DataError, match="IDX file|truncated|corrupt"):
        load_dataset(path)


@FUZZ
@hypothesis.given(position=st.integers(0, 15), bit=st.integers(0, 7))
def test_corrupt_idx_header_is_a_data_error(tmp_path_factory, position, bit):
    content = bytearray(idx_bytes(IMAGES))
    content[position] ^= 1 << bit
    path = write(tmp_path_factory.mktemp("idx"), "train-images-idx3-ubyte", bytes(content))
    with pytest.raises(DataError, match="magic number|should hold|truncated"):
        load_dataset(path)


@FUZZ
@hypothesis.given(data=st.data())
def test_corrupt_gzipped_idx_is_a_data_error_or_the_same_data(tmp_path_factory, data):
    content = bytearray(gzip.compress(idx_bytes(IMAGES), mtime=0))
    position = data.draw(st.integers(0, len(content) - 1))
    content[position] ^= 1 << data.draw(st.integers(0, 7))
    folder = tmp_path_factory.mktemp("idx")
    reference = load_dataset(write(folder, "ref-idx3-ubyte", idx_bytes(IMAGES)))
    # gzip's CRC-32 catches changes to the pixels; flips in unused header fields are harmless.
    got = load_or_data_error(write(folder, "train-images-idx3-ubyte.gz", bytes(content)))
    if got is not None:
        assert_same(got, reference)


# ------------------------------------------------------------------------------------------------
# npz.


def _central_directory_offset(content):
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        return min(zf.getinfo(n).header_offset for n in zf.namelist()), zf.start_dir


@FUZZ
@hypothesis.given(compressed=st.booleans(), cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_npz_is_a_data_error(tmp_path_factory, compressed, cut):
    content = npz_bytes(compressed, x_train=IMAGES, x_test=IMAGES[:2])
    path = write(tmp_path_factory.mktemp("npz"), "data.npz", content[: int(cut * len(content))])
    with pytest.raises(DataError, match="truncated, corrupt"):
        load_dataset(path)


@FUZZ
@hypothesis.given(compressed=st.booleans(), data=st.data())
def test_corrupt_npz_entries_are_a_data_error_or_the_same_data(tmp_path_factory, compressed, data):
    content = bytearray(npz_bytes(compressed, x_train=IMAGES, x_test=IMAGES[:2]))
    # The local entries (headers and CRC-protected array payloads); the zip directory at the
    # end has no checksum and is covered by the explicit cases below.
    start, end = _central_directory_offset(bytes(content))
    position = data.draw(st.integers(start, end - 1))
    content[position] ^= 1 << data.draw(st.integers(0, 7))
    folder = tmp_path_factory.mktemp("npz")
    reference = load_dataset(write(folder, "ref.npz", npz_bytes(x_train=IMAGES, x_test=IMAGES[:2])))
    got = load_or_data_error(write(folder, "data.npz", bytes(content)))
    if got is not None:
        assert_same(got, reference)


def _flip_in_central_directory(content, field_offset, value):
    """Sets one byte of the first central-directory record of a zip."""
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        start = zf.start_dir
    content = bytearray(content)
    content[start + field_offset] = value
    return bytes(content)


@pytest.mark.parametrize(
    "field_offset, value",
    [(10, 0x63), (8, 0x01), (6, 0xFF)],  # compression method 99, encrypted flag, zip version
    ids=["compression_method", "encrypted_flag", "zip_version"],
)
def test_corrupt_npz_directory_fields_are_a_data_error(tmp_path, field_offset, value):
    content = npz_bytes(x_train=IMAGES, x_test=IMAGES[:2])
    path = write(tmp_path, "data.npz", _flip_in_central_directory(content, field_offset, value))
    with pytest.raises(DataError, match="data.npz"):
        load_dataset(path)


@pytest.mark.parametrize(
    "arrays, expected",
    [
        ({"images": IMAGES}, r"holds arrays \['images'\]; expected 'x_train' and 'x_test'"),
        ({"X": IMAGES, "Y": np.arange(6)}, r"holds arrays \['X', 'Y'\]"),
        ({"x_test": IMAGES}, r"holds arrays \['x_test'\]"),
        ({}, r"holds arrays \[\]"),
    ],
    ids=["images", "upper_case", "test_only", "no_arrays"],
)
def test_npz_with_wrong_keys_is_a_data_error(tmp_path, arrays, expected):
    path = write(tmp_path, "data.npz", npz_bytes(**arrays))
    with pytest.raises(DataError, match=expected):
        load_dataset(path)


def test_npz_with_disagreeing_train_and_test_shapes_is_a_data_error(tmp_path):
    path = write(tmp_path, "data.npz", npz_bytes(x_train=IMAGES, x_test=IMAGES[:, :3]))
    with pytest.raises(DataError, match=r"x_train examples have shape \(4, 4\) but x_test"):
        load_dataset(path)


# ------------------------------------------------------------------------------------------------
# Values: empty, NaN/inf, pixels out of range.


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".csv"])
def test_empty_data_is_a_data_error(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    if suffix == ".npz":
        path.write_bytes(npz_bytes(x=np.zeros((0, 4, 4), np.uint8)))
    elif suffix == ".npy":
        np.save(path, np.zeros((0, 5), np.float32))
    else:
        path.write_text("a,b,c\n")
    with pytest.raises(DataError, match="empty|nothing to train on"):
        load_dataset(str(path))


def test_empty_image_folder_is_a_data_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no PNG/JPEG images"):
        load_dataset(str(tmp_path / "images"))


@FUZZ
@hypothesis.given(
    data=st.data(),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    fmt=st.sampled_from(["npz", "npy", "csv"]),
)
def test_nan_or_inf_anywhere_is_a_data_error(tmp_path_factory, data, bad, fmt):
    x = np.random.default_rng(1).random((8, 5)).astype("float32")
    row, col = data.draw(st.integers(0, 7)), data.draw(st.integers(0, 4))
    x[row, col] = bad
    path = tmp_path_factory.mktemp("values") / f"table.{fmt}"
    if fmt == "npz":
        path.write_bytes(npz_bytes(x=x))
    elif fmt == "npy":
        np.save(path, x)
    else:
        np.savetxt(path, x, delimiter=",")
    with pytest.raises(DataError, match=f"NaN or inf \\(the first in example {row}\\)"):
        load_dataset(str(path))


@FUZZ
@hypothesis.given(
    dtype=st.sampled_from(["uint8", "int32", "int64", "float32", "float64"]),
    high=st.integers(2, 255),
)
def test_pixels_0_to_255_are_scaled_to_unit_interval_and_say_so(tmp_path_factory, dtype, high):
    x = np.random.default_rng(high).integers(0, high + 1, (6, 4, 4)).astype(dtype)
    x[0, 0, 0] = high
    path = tmp_path_factory.mktemp("pixels") / "images.npz"
    path.write_bytes(npz_bytes(x_train=x, x_test=x[:2]))
    ds = load_dataset(str(path))
    # Integers (and floats above 1) are 0..255 pixels: divided by 255, recorded in info.
    if dtype.startswith(("uint", "int")) or high > 1:
        assert ds.info["scaled"] == "divided by 255"
        np.testing.assert_allclose(ds.x_train[..., 0], x.astype("float32") / 255, rtol=1e-6)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_pixels_above_255_are_a_data_error(tmp_path, dtype):
    x = np.arange(6 * 4 * 4).reshape(6, 4, 4).astype(dtype) * 10  # 0..950, e.g. 10-bit data
    path = write(tmp_path, "images.npz", npz_bytes(x_train=x, x_test=x[:2]))
    # Not divided by np.iinfo(dtype).max, which gave pixels of ~1e-16 for int64.
    with pytest.raises(DataError, match="integer pixels range up to 950; expected 0..255"):
        load_dataset(path)


def test_negative_or_oversized_float_pixels_are_a_data_error(tmp_path):
    for name, x in (("neg.npz", IMAGES.astype("float32") - 1), ("big.npz", IMAGES * 2.0)):
        with pytest.raises(DataError, match=r"pixel values range over .* expected \[0, 1\]"):
            load_dataset(write(tmp_path, name, npz_bytes(x=x)))


# ------------------------------------------------------------------------------------------------
# Image folders.


@FUZZ
@hypothesis.given(
    sizes=st.lists(st.tuples(st.integers(2, 9), st.integers(2, 9)), min_size=2, max_size=5)
)
def test_mixed_image_sizes_are_a_data_error(tmp_path_factory, sizes):
    folder = tmp_path_factory.mktemp("pngs")
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(np.full((h, w), 40 * i, np.uint8)).save(folder / f"{i:02d}.png")
    if len(set(sizes)) == 1:
        assert load_dataset(str(folder)).info["shape"] == [sizes[0][1], sizes[0][0], 1]
    else:
        with pytest.raises(DataError, match="Images differ in size"):
            load_dataset(str(folder))


@FUZZ
@hypothesis.given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_png_is_a_data_error_or_the_same_pixels(tmp_path_factory, cut):
    folder = tmp_path_factory.mktemp("pngs")
    noise = np.random.default_rng(2).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    for i in range(3):
        Image.fromarray(noise[i]).save(folder / f"{i}.png")
    reference = load_dataset(str(folder))
    content = (folder / "1.png").read_bytes()
    (folder / "1.png").write_bytes(content[: int(cut * len(content))])
    try:
        got = load_dataset(str(folder))
    except DataError as e:
        assert "1.png" in str(e) and "truncated or corrupt" in str(e)
        return
    # Only a cut after the last pixel (in the final checksum or end chunk) may load, and then
    # to exactly the same pixels.
    assert cut * len(content) >= len(content) - 20
    assert_same(got, reference)


# ------------------------------------------------------------------------------------------------
# The model itself, for data that skipped the loader.


def test_model_refuses_integer_and_unscaled_pixels():
    vae = helpers.tiny_vae()
    pixels = (helpers.digits()[:8] * 255).round()
    with pytest.raises(TypeError, match="Expected floating-point inputs.*received dtype uint8"):
        vae(pixels.astype("uint8"))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"needs pixels in \[0, 1\]"):
        vae.reconstruct(pixels)
    # fit raises too: 0..255 data never trains silently into a wrong model.
    model = keras_vae.build_vae((8, 8, 1), latent_dim=2, hidden_units=(8,), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"needs pixels in \[0, 1\]"):
        model.fit(pixels, epochs=1, batch_size=8, verbose=0)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
@pytest.mark.parametrize("shape", [(10**11, 4), (2 * 10**8, 4, 4)], ids=["1.5TiB", "12GiB"])
def test_a_header_claiming_a_huge_array_is_an_error_without_allocating_it(tmp_path, suffix, shape):
    import resource

    from numpy.lib import format as npy_format

    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    buf.write(np.zeros(64, "<f4").tobytes())
    path = tmp_path / f"lying{suffix}"
    if suffix == ".npy":
        path.write_bytes(buf.getvalue())
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("x.npy", buf.getvalue())
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="truncated|corrupt"):
        load_dataset(str(path))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 256, f"reading a lying header raised the peak memory by {grown_mib} MiB"


def test_cli_reports_bad_data_on_one_line_with_status_2(tmp_path, capsys):
    from keras_vae.training import cli

    path = write(tmp_path, "data.npz", npz_bytes(x_train=IMAGES, x_test=IMAGES[:2])[:300])
    with pytest.raises(SystemExit) as info:
        cli.main(["--data", path, "--epochs", "1", "--run-dir", str(tmp_path / "run")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-vae-train: error: Could not read") and "data.npz" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "model.keras").exists()
