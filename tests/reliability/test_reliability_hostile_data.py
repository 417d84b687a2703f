"""Hostile data files (issue 17): each is read right or refused with one `DataError` line that names
the file, before anything big is allocated and without blocking. Real files written to tmp_path:
PNGs through Pillow, gzip streams, npz archives, FIFOs.
"""

import contextlib
import gzip
import io
import os
import re
import resource
import signal
import struct
import zipfile
import zlib

import numpy as np
import pytest
from numpy.lib import format as npy_format
from PIL import Image

from keras_vae.training.data import BUDGET_ENV, DataError, load_dataset


def refused(path, match, **kwargs):
    """The one-line DataError `load_dataset(path)` raises; it must name the file."""
    with pytest.raises(DataError, match=match) as error:
        load_dataset(str(path), **kwargs)
    message = str(error.value)
    assert "\n" not in message, f"not one line: {message!r}"
    assert os.path.basename(str(path).rstrip("/")) in message, f"the file is not named: {message}"
    return message


@pytest.fixture
def deadline():
    """Fails a test whose load blocks (a FIFO opened for reading waits for a writer for ever)."""

    def on_alarm(signum, frame):
        raise TimeoutError("the load blocked for 10 s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def address_space_headroom(extra_bytes):
    """Caps this process's address space at its size now plus `extra_bytes`, so a loader that
    regresses into inflating a bomb gets a MemoryError instead of eating the machine."""
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm + extra_bytes if hard == resource.RLIM_INFINITY else min(vm + extra_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------
# 1, 2. PNG modes: 16-bit levels kept, transparency refused unless every pixel is opaque.


def test_16_bit_png_keeps_its_65536_levels(tmp_path):
    levels = np.linspace(0, 65535, 6 * 7).astype(np.uint16).reshape(6, 7)
    for i in range(4):
        Image.fromarray(np.roll(levels, i)).save(tmp_path / f"{i}.png")
    assert Image.open(tmp_path / "0.png").mode == "I;16"
    ds = load_dataset(str(tmp_path), test_split=0.25)
    every = np.concatenate([ds.x_train, ds.x_test])[..., 0]
    # Each image's own levels, not convert("L")'s two (0 and 255 after clipping).
    assert len(np.unique(every)) == 6 * 7
    np.testing.assert_allclose(
        np.sort(every.ravel()), np.sort(np.tile(levels.ravel(), 4)) / 65535, rtol=1e-6
    )
    assert ds.info["scaled"] == "16-bit divided by 65535"


def test_8_and_16_bit_pngs_together_are_each_scaled_by_their_own_depth(tmp_path):
    Image.fromarray(np.full((3, 3), 65535, np.uint16)).save(tmp_path / "a16.png")
    Image.fromarray(np.full((3, 3), 255, np.uint8)).save(tmp_path / "b8.png")
    Image.fromarray(np.full((3, 3), 0, np.uint8)).save(tmp_path / "c8.png")
    ds = load_dataset(str(tmp_path), test_split=0.34)
    every = np.concatenate([ds.x_train, ds.x_test])
    assert sorted(every.reshape(3, -1).max(axis=1).tolist()) == [0.0, 1.0, 1.0]
    assert ds.info["scaled"] == "16-bit divided by 65535, 8-bit by 255"


def test_opaque_rgba_and_palette_pngs_load_as_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 5, 3), dtype=np.uint8)
    for i, image in enumerate(rgb):
        rgba = np.concatenate([image, np.full((5, 5, 1), 255, np.uint8)], axis=-1)
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"{i}.png")
    # A palette image whose transparent index no pixel uses is opaque too.
    palette = Image.new("P", (5, 5), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30])
    palette.save(tmp_path / "p.png", transparency=0)
    ds = load_dataset(str(tmp_path), test_split=0.2)
    every = np.concatenate([ds.x_train, ds.x_test])
    assert every.shape == (5, 5, 5, 3)
    expected = np.concatenate([rgb, np.broadcast_to([10, 20, 30], (1, 5, 5, 3))]) / 255.0
    np.testing.assert_allclose(
        np.sort(every.reshape(5, -1), axis=0), np.sort(expected.reshape(5, -1), axis=0), rtol=1e-6
    )


def _transparent(mode):
    if mode == "RGBA":
        pixels = np.full((4, 4, 4), 200, np.uint8)
        pixels[0, 0, 3] = 0
        return Image.fromarray(pixels, "RGBA"), {}
    if mode == "LA":
        pixels = np.full((4, 4, 2), 200, np.uint8)
        pixels[1, 2, 1] = 128
        return Image.fromarray(pixels, "LA"), {}
    if mode == "P":
        image = Image.new("P", (4, 4), 1)
        image.putpalette([0, 0, 0, 255, 255, 255])
        image.putpixel((0, 0), 0)
        return image, {"transparency": 0}
    if mode == "L":  # a tRNS colour key: grey level 7 is transparent
        image = Image.fromarray(np.full((4, 4), 7, np.uint8))
        return image, {"transparency": 7}
    image = Image.fromarray(np.full((4, 4), 1000, np.uint16))  # I;16 with a colour key
    return image, {"transparency": 1000}


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "I;16"])
def test_transparent_png_is_a_data_error_naming_it(tmp_path, mode):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    image, options = _transparent(mode)
    image.save(tmp_path / "b.png", **options)
    message = refused(tmp_path, r"b\.png.* transparent.*Flatten it onto a background")
    assert "save it as RGB" in message


# ------------------------------------------------------------------------------------------------
# 3. CSV from Excel ("CSV UTF-8": a byte-order mark, often no header).


def test_csv_with_a_byte_order_mark_and_no_header_keeps_its_first_row(tmp_path):
    table = np.arange(12, dtype="float64").reshape(6, 2)
    text = "\n".join(f"{a:g},{b:g}" for a, b in table)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    ds = load_dataset(str(tmp_path / "bom.csv"), test_split=0.5)
    assert len(ds.x_train) + len(ds.x_test) == 6
    assert ds.info["min"] == [0.0, 1.0]  # row 1 is in: min-max from all training rows
    # With a header the header still goes, and only it.
    (tmp_path / "head.csv").write_bytes(b"\xef\xbb\xbfa,b\n" + text.encode())
    ds = load_dataset(str(tmp_path / "head.csv"), test_split=0.5)
    assert len(ds.x_train) + len(ds.x_test) == 6


# ------------------------------------------------------------------------------------------------
# 4. Small files that claim or inflate to gigabytes: refused from the header, nothing allocated.


def gzip_bomb(path, dims):
    """A real gzip'd IDX file of `dims` zeros, ~1/1000 of their size, written in milliseconds.

    After a full flush deflate restarts from nothing, so one compressed MiB of zeros repeats
    byte for byte. The CRC-32 and length in the trailer are left 0: a loader that refuses at the
    header never reaches them.
    """
    encoder = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = [encoder.compress(struct.pack(">iIII", 0x803, *dims)), encoder.flush(zlib.Z_FULL_FLUSH)]
    zeros = encoder.compress(bytes(2**20)) + encoder.flush(zlib.Z_FULL_FLUSH)
    body += [zeros * (int(np.prod(dims, dtype=np.float64)) // 2**20), encoder.flush()]
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    path.write_bytes(gzip_header + b"".join(body) + struct.pack("<II", 0, 0))
    return str(path)


def test_gzip_idx_bomb_is_refused_before_it_is_inflated(tmp_path):
    # 7.8 MB on disk, ten million 28x28 images (7.8 GB) inflated: the reported file.
    path = gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", (10**7, 28, 28))
    assert os.path.getsize(path) < 8 * 10**6
    before = peak_rss_mib()
    with address_space_headroom(2 * 2**30):
        message = refused(path, r"declares shape \(10000000, 28, 28\): 29\.2 GiB as float32")
    assert "over the memory budget of 4.0 GiB" in message and BUDGET_ENV in message
    assert peak_rss_mib() - before < 256


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_header_claiming_a_huge_shape_is_refused_without_allocating(tmp_path, gz):
    # 10**6 images of 3000x3000 (9 TB) declared by a 16-byte header and 64 bytes of pixels.
    content = struct.pack(">iIII", 0x803, 10**6, 3000, 3000) + bytes(64)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    path.write_bytes(gzip.compress(content) if gz else content)
    # Raw, the file's own length gives it away; gzip'd, the budget does.
    refused(path, "should hold 9000000000000 bytes.*holds 64" if not gz else "over the memory")


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_npy_data_over_the_memory_budget_are_refused_from_the_header(tmp_path, suffix, monkeypatch):
    zeros = np.zeros((64, 512, 512), np.uint8)  # 16 MiB, 64 MiB as float32
    path = tmp_path / f"zeros{suffix}"
    if suffix == ".npz":
        np.savez_compressed(path, x=zeros)  # ~16 KiB on disk: an npz bomb in small
        assert os.path.getsize(path) < 2**20
    else:
        np.save(path, zeros)
    monkeypatch.setenv(BUDGET_ENV, "0.03125")  # 32 MiB
    message = refused(path, "64.0 MiB as float32, over the memory budget of 32.0 MiB")
    assert "16,777,216 values in x" in message or "shape (64, 512, 512)" in message
    assert f"raise the budget with {BUDGET_ENV}=<GiB>" in message
    monkeypatch.setenv(BUDGET_ENV, "1")
    assert load_dataset(str(path), limit=2).x_train.shape == (2, 512, 512, 1)


def test_npz_member_header_claiming_more_than_the_member_holds_is_corrupt(tmp_path):
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 3000, 3000)}
    )
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", buf.getvalue() + bytes(64))
    refused(path, r"declares an array of shape \(1000000, 3000, 3000\).*truncated or corrupt")


def test_image_folder_over_the_budget_is_refused_before_any_pixel_is_decoded(tmp_path, monkeypatch):
    for i in range(4):
        Image.fromarray(np.full((64, 64), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    # The last one's pixels are cut short: decoding it would fail, so the budget must come first.
    content = (tmp_path / "3.png").read_bytes()
    (tmp_path / "3.png").write_bytes(content[: len(content) - 30])
    monkeypatch.setenv(BUDGET_ENV, str(3.5 * 64 * 64 * 4 / 2**30))  # room for 3.5 images
    refused(tmp_path, r"The 4 images in .* are 64x64 with 1 channel\(s\): 64\.0 KiB as float32")
    monkeypatch.setenv(BUDGET_ENV, "1")
    refused(tmp_path, r"3\.png.*truncated or corrupt")


@pytest.mark.parametrize("value", ["0", "-2", "lots", "nan", "inf"])
def test_a_bad_budget_setting_is_a_data_error(tmp_path, monkeypatch, value):
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    monkeypatch.setenv(BUDGET_ENV, value)
    with pytest.raises(DataError, match=f"{BUDGET_ENV}='{value}'; expected a positive number"):
        load_dataset(str(tmp_path / "x.npy"))


# ------------------------------------------------------------------------------------------------
# 5. Hangs: FIFOs, and a walk over the whole file system.


def test_a_fifo_named_png_in_an_image_folder_is_refused_not_waited_on(tmp_path, deadline):
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "b.png")
    refused(tmp_path, r"b\.png' is a FIFO, not a regular file")


@pytest.mark.parametrize("name", ["x.npz", "x.npy", "x.csv", "train-images-idx3-ubyte"])
def test_a_fifo_passed_as_the_data_file_is_refused(tmp_path, deadline, name):
    os.mkfifo(tmp_path / name)
    refused(tmp_path / name, "is a FIFO, not a regular file")


def test_an_image_folder_is_read_one_subfolder_deep_only(tmp_path, deadline):
    for label in ("cat", "dog"):
        (tmp_path / label / "deeper").mkdir(parents=True)
        for i in range(2):
            Image.new("L", (4, 4), 100).save(tmp_path / label / f"{i}.png")
        # Below a class folder: never listed, so neither its FIFO nor its odd size is seen.
        os.mkfifo(tmp_path / label / "deeper" / "blocks.png")
        Image.new("L", (9, 9)).save(tmp_path / label / "deeper" / "other.png")
    ds = load_dataset(str(tmp_path), test_split=0.25)
    assert ds.info["classes"] == ["cat", "dog"] and ds.info["num_train"] == 3


def test_images_only_deeper_than_one_subfolder_say_where_they_are_looked_for(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.new("L", (4, 4)).save(tmp_path / "a" / "b" / "0.png")
    refused(tmp_path, "no PNG/JPEG images.*its immediate subfolders only")


def test_the_root_of_the_file_system_is_not_walked(deadline):
    # Before: os.walk("/") for minutes (or for ever, into a FIFO). Now the root and its immediate
    # subfolders are listed; whatever they hold, the answer comes within the deadline.
    try:
        load_dataset("/")
    except DataError as e:
        assert "\n" not in str(e)
        # No file it names lies deeper than /folder/file (before: /root/.pyenv/versions/...).
        for named in re.findall(r"'(/[^']*)'", str(e)):
            assert named.strip("/").count("/") <= 1, f"walked below the subfolders: {e}"


# ------------------------------------------------------------------------------------------------
# 6. What used to be tracebacks.


def test_a_broken_link_named_png_is_a_data_error(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "b.png")
    refused(tmp_path, r"Could not open .*b\.png.*broken link")


def png_header_only(path, width, height):
    """A PNG whose header declares `width` x `height` grey pixels and holds none."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    )


def test_a_png_over_pillows_decompression_bomb_limit_says_so(tmp_path):
    png_header_only(tmp_path / "huge.png", 20_000, 20_000)
    refused(tmp_path, r"huge\.png' is too large to decode safely \(Image size \(400000000 pixels\)")


@pytest.mark.parametrize(
    "dims",
    [(-1, -5, 4), (2**31 - 1, 2**31 - 1, 2**31 - 1), (-(2**31), 1, 1)],
    ids=["negative", "product_overflows_int64", "int32_min"],
)
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_dimensions_that_are_negative_as_int32_or_overflow_are_a_data_error(tmp_path, dims, gz):
    content = struct.pack(">iiii", 0x803, *dims) + bytes(20)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(content) if gz else content)
    refused(path, "should hold|over the memory budget")


def test_idx_holding_more_than_its_header_declares_is_a_data_error(tmp_path):
    content = struct.pack(">iIII", 0x803, 2, 2, 2) + bytes(9)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(content))
    refused(path, r"should hold 8 bytes of data for shape \(2, 2, 2\) but holds more than 8")


@pytest.mark.parametrize("where", ["npy", "npz_x", "npz_y"])
def test_a_0_d_array_is_a_data_error(tmp_path, where):
    path = tmp_path / ("scalar.npy" if where == "npy" else "scalar.npz")
    if where == "npy":
        np.save(path, np.float64(3.0))
    elif where == "npz_x":
        np.savez(path, x=np.float64(3.0))
    else:
        np.savez(path, x=np.zeros((4, 3)), y=np.int64(1))
    refused(path, "a single (number|value) \\(a 0-d array\\)")


def test_a_csv_field_over_the_csv_field_limit_is_a_data_error(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("1,2\n3," + "4" * 200_000 + "\n")
    refused(path, r"line 2: could not read it as CSV \(field larger than field limit")


@pytest.mark.parametrize("fmt", ["csv", "npy"])
def test_values_near_the_float64_limit_are_min_max_scaled_without_overflow(tmp_path, fmt):
    table = np.array([[-1e308, 1.0], [1e308, 2.0], [0.0, 3.0], [5e307, 4.0]] * 3)
    path = tmp_path / f"huge.{fmt}"
    if fmt == "csv":
        np.savetxt(path, table, delimiter=",", fmt="%.17g")
    else:
        np.save(path, table)
    ds = load_dataset(str(path), test_split=0.25)
    every = np.concatenate([ds.x_train, ds.x_test])
    assert np.isfinite(every).all() and every.min() >= 0 and every.max() <= 1
    assert ds.info["min"][0] == -1e308 and ds.info["max"][0] == 1e308
    assert sorted(set(np.round(every[:, 0], 6).tolist())) == [0.0, 0.5, 0.75, 1.0]


def test_held_out_values_past_float32_after_scaling_are_a_data_error(tmp_path):
    # The training rows (seed 0 keeps row 0 out) span a 1e-30 range; row 0 lies 1e10 beyond it.
    table = np.concatenate([[[1e10]], np.linspace(0, 1e-30, 9)[:, None]])
    np.save(tmp_path / "narrow.npy", table)
    seed = _seed_holding_out_row_0(10)
    message = refused(tmp_path / "narrow.npy", "past float32's range", test_split=0.1, seed=seed)
    assert "column 0 spans [0, 1e-30]" in message


def _seed_holding_out_row_0(n):
    """A seed whose 10% split holds out row 0 (the split is a seeded permutation)."""
    return next(s for s in range(100) if np.random.default_rng(s).permutation(n)[0] == 0)


def test_a_symlink_loop_named_png_is_named_not_the_whole_folder(tmp_path):
    # b.png -> b.png cannot be followed; the folder itself lists fine.
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    os.symlink(tmp_path / "b.png", tmp_path / "b.png")
    refused(tmp_path, r"Could not open .*b\.png.*Too many levels of symbolic links")


@pytest.mark.parametrize("where", ["npy", "npz_x", "npz_y"])
def test_object_arrays_are_refused_as_pickles_from_the_header(tmp_path, where):
    objects = np.array([{"a": 1}, None] * 2, dtype=object)
    path = tmp_path / ("objects.npy" if where == "npy" else "objects.npz")
    if where == "npy":
        np.save(path, objects, allow_pickle=True)
    elif where == "npz_x":
        np.savez(path, x=objects)
    else:
        np.savez(path, x=np.zeros((4, 3)), y=objects)
    message = refused(path, r"holds Python objects \(dtype object\), which only pickle can load")
    assert "truncated" not in message
