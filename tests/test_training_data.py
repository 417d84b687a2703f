"""training.data: the named sets (digits28 and photos64 at real size, offline), every local format
from small files written here, bad files failing clearly, and tf.data batching."""

import gzip
import os
import struct

import numpy as np
import pytest
from PIL import Image

from keras_vae.training.config import NAMED_DATA, TrainConfig
from keras_vae.training.data import (
    LOADERS,
    DataError,
    load_dataset,
    make_dataset,
    read_idx,
    steps_per_epoch,
)


def _images(n=20, h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def _write_idx(path, array, magic=0x00000803):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)
    return payload


def test_digits_default_is_scaled_images_with_labels():
    ds = load_dataset("digits", test_split=0.2, seed=0)
    assert ds.x_train.shape[1:] == (8, 8, 1) and ds.x_train.dtype == np.float32
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.x_test) == round(1797 * 0.2)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.y_test.shape == (len(ds.x_test),) and set(ds.y_test) <= set(range(10))
    assert ds.info["likelihood"] == "bernoulli" and ds.info["kind"] == "image"
    # The split is a function of the seed.
    again = load_dataset("digits", test_split=0.2, seed=0)
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    other = load_dataset("digits", test_split=0.2, seed=1)
    assert not np.array_equal(ds.x_test, other.x_test)


def _correlations(a, b):
    """Pearson correlation of each row of `a` with the same row of `b`."""
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(axis=1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def _nearest_centroid_accuracy(ds):
    x_train = ds.x_train.reshape(len(ds.x_train), -1)
    x_test = ds.x_test.reshape(len(ds.x_test), -1)
    centroids = np.stack([x_train[ds.y_train == c].mean(axis=0) for c in range(10)])
    distances = ((x_test[:, None] - centroids[None]) ** 2).sum(axis=-1)
    return float((distances.argmin(axis=1) == ds.y_test).mean())


def test_named_data_agree_with_the_config():
    assert set(NAMED_DATA) == set(LOADERS)
    for name in ("digits28", "photos64"):
        assert TrainConfig(data=name, arch="conv").validate().data == name


def test_digits28_are_the_digits_at_mnist_size(digits28, digits):
    x, y = digits28
    assert x.shape == (1797, 28, 28, 1) and x.dtype == np.float32 and x.nbytes == 5_635_392
    assert x.min() == 0.0 and x.max() == 1.0
    # MNIST's layout: the digit in the middle 20x20, a black 4-pixel border around it.
    inner = np.zeros((28, 28), bool)
    inner[4:24, 4:24] = True
    assert not x[:, ~inner].any() and x[:, inner].mean() > 0.2
    np.testing.assert_array_equal(y, digits[1])
    # Deterministic: a second build is identical.
    np.testing.assert_array_equal(LOADERS["digits28"]()["x"], x)


def test_digits28_keep_each_digit_and_the_classes(digits28, digits):
    x, _ = digits28
    # Area-averaging the 20x20 digit back to 8x8 gives the original digit again (smoothly
    # upsampled, not shifted, flipped or mixed up with another example).
    back = np.stack(
        [np.asarray(Image.fromarray(im[4:24, 4:24, 0]).resize((8, 8), Image.BOX)) for im in x]
    )
    correlations = _correlations(back, digits[0][..., 0])
    assert correlations.min() > 0.9 and np.median(correlations) > 0.97
    # Smooth, not blocky: neighbouring pixels inside the digit rarely jump by more than 0.5
    # (nearest-neighbour 3.5x upsampling would copy the 8x8 grid's jumps of up to 1.0).
    assert np.mean(np.abs(np.diff(x[:, 4:24, 4:24, 0], axis=2)) > 0.5) < 0.005
    # The class structure survives: a nearest-class-mean classifier does as well as on 8x8.
    ds28, ds8 = load_dataset("digits28", seed=0), load_dataset("digits", seed=0)
    np.testing.assert_array_equal(ds28.y_test, ds8.y_test)
    accuracy = _nearest_centroid_accuracy(ds28)
    assert accuracy > 0.85 and abs(accuracy - _nearest_centroid_accuracy(ds8)) < 0.03


def test_photos64_are_colour_patches_of_the_two_photos(photos64):
    from sklearn.datasets import load_sample_images

    x = photos64
    assert x.shape == (2000, 64, 64, 3) and x.dtype == np.float32 and x.nbytes == 98_304_000
    assert x.min() == 0.0 and x.max() == 1.0
    raw = LOADERS["photos64"]()
    labels = raw["y"]
    np.testing.assert_array_equal(labels, np.repeat([0, 1], 1000))
    assert raw["classes"] == ["china", "flower"]
    # Colour, not grey: the flower photo is orange petals on dark green, far from R = G = B.
    assert np.abs(x[labels == 1, ..., 0] - x[labels == 1, ..., 2]).mean() > 0.1
    # The first 500 patches are exact 64x64 crops of china.jpg at full size.
    china = load_sample_images().images[0].astype("float32") / 255.0
    for patch in x[:500:100]:
        rows, cols = np.nonzero((china[:-63, :-63] == patch[0, 0]).all(axis=-1))
        assert any(
            np.array_equal(china[r : r + 64, c : c + 64], patch)
            for r, c in zip(rows, cols, strict=True)
        )
    # The downscaled copies put whole objects in a patch: their 1/4-scale patches (the last
    # 200 of each photo) vary more within a patch than the full-size texture patches.
    for first in (0, 1000):
        full = x[first : first + 500].std(axis=(1, 2)).mean()
        quarter = x[first + 800 : first + 1000].std(axis=(1, 2)).mean()
        assert quarter > 1.5 * full
    # Deterministic for a seed; another seed cuts elsewhere.
    np.testing.assert_array_equal(raw["x"], x)
    other = LOADERS["photos64"](patches={1: 5}, seed=1)["x"]
    assert other.shape == (10, 64, 64, 3) and not np.array_equal(other[:5], x[:5])


def test_photos64_suggest_a_gaussian_likelihood():
    ds = load_dataset("photos64", test_split=0.2, seed=0)
    assert ds.info["likelihood"] == "gaussian" and ds.info["kind"] == "image"
    assert ds.info["shape"] == [64, 64, 3] and ds.info["classes"] == ["china", "flower"]
    assert ds.info["scaled"] == "divided by 255"
    assert (len(ds.x_train), len(ds.x_test)) == (1600, 400)
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_test.min() and ds.x_test.max() <= 1.0
    assert set(np.unique(ds.y_test)) == {0, 1}
    # The digits stay Bernoulli: the suggestion is the loader's, not a rule for every image.
    assert load_dataset("digits28").info["likelihood"] == "bernoulli"


@pytest.mark.parametrize("name, shape", [("digits28", (28, 28, 1)), ("photos64", (64, 64, 3))])
def test_real_size_data_split_and_batch(name, shape):
    ds = load_dataset(name, test_split=0.25, seed=3)
    total = 1797 if name == "digits28" else 2000
    assert len(ds.x_train) + len(ds.x_test) == total
    assert len(ds.x_test) == round(total * 0.25) and ds.y_train.dtype == np.int64
    # The split is a function of the seed.
    np.testing.assert_array_equal(ds.x_test, load_dataset(name, test_split=0.25, seed=3).x_test)
    assert not np.array_equal(ds.x_test[:5], load_dataset(name, test_split=0.25, seed=4).x_test[:5])
    batches = [b.numpy() for b in make_dataset(ds.x_test, 128)]
    assert len(batches) == steps_per_epoch(len(ds.x_test), 128)
    assert batches[0].shape == (128, *shape) and batches[0].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate(batches), ds.x_test)
    first = next(iter(make_dataset(ds.x_train, 64, shuffle=True, seed=0))).numpy()
    assert first.shape == (64, *shape)
    assert all((ds.x_train == example).all(axis=(1, 2, 3)).any() for example in first[:4])
    # --limit keeps a copy of the first examples, not a view that holds the whole set.
    small = load_dataset(name, test_split=0.25, seed=3, limit=10)
    assert small.x_train.shape == (10, *shape) and small.x_train.base is None
    np.testing.assert_array_equal(small.x_train, ds.x_train[:10])


def test_ring_is_the_seed_toy():
    ds = load_dataset("ring")
    x = np.concatenate([ds.x_train, ds.x_test])
    radius = np.linalg.norm(x, axis=1)
    # ||g(z)|| = 1 + ||z||/10: every point lies outside the unit circle, most within 1.3.
    assert radius.min() >= 1.0 and np.median(radius) < 1.2
    assert ds.info["kind"] == "vector" and ds.info["likelihood"] == "gaussian"


def test_npz_keras_layout_keeps_its_split(tmp_path):
    x_train, x_test = _images(30), _images(10, seed=1)
    path = str(tmp_path / "mnist.npz")
    np.savez(path, x_train=x_train, y_train=np.arange(30) % 10, x_test=x_test, y_test=np.arange(10))
    ds = load_dataset(path)
    assert ds.x_train.shape == (30, 6, 5, 1) and ds.x_test.shape == (10, 6, 5, 1)
    np.testing.assert_allclose(ds.x_test[..., 0], x_test / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, np.arange(10))
    assert ds.info["scaled"] == "divided by 255"


def test_npz_single_x_is_split(tmp_path):
    path = str(tmp_path / "x.npz")
    np.savez(path, x=_images(40).astype("float32") / 255.0)
    ds = load_dataset(path, test_split=0.25)
    assert (len(ds.x_train), len(ds.x_test)) == (30, 10) and ds.y_train is None


def test_idx_raw_gz_and_folder(tmp_path):
    images, labels = _images(12, 4, 4), (np.arange(12) % 3).astype(np.uint8)
    raw = str(tmp_path / "train-images-idx3-ubyte")
    gz = str(tmp_path / "train-images-idx3-ubyte.gz")
    _write_idx(raw, images)
    _write_idx(gz, images)
    np.testing.assert_array_equal(read_idx(raw), images)
    np.testing.assert_array_equal(read_idx(gz), images)
    ds = load_dataset(gz, test_split=0.25)
    assert ds.x_train.shape == (9, 4, 4, 1)
    # A folder with train and t10k files (labels too) keeps its own split and labels.
    folder = tmp_path / "mnist_idx"
    folder.mkdir()
    _write_idx(str(folder / "train-images-idx3-ubyte.gz"), images)
    _write_idx(str(folder / "train-labels-idx1-ubyte.gz"), labels, magic=0x00000801)
    _write_idx(str(folder / "t10k-images-idx3-ubyte.gz"), images[:5])
    _write_idx(str(folder / "t10k-labels-idx1-ubyte.gz"), labels[:5], magic=0x00000801)
    ds = load_dataset(str(folder))
    assert ds.x_train.shape == (12, 4, 4, 1) and ds.x_test.shape == (5, 4, 4, 1)
    np.testing.assert_array_equal(ds.y_train, labels)
    np.testing.assert_allclose(ds.x_test[..., 0], images[:5] / 255.0, rtol=1e-6)


def test_png_folder_with_class_subfolders(tmp_path):
    images = _images(8, 7, 9)
    for i, image in enumerate(images):
        folder = tmp_path / f"class_{i % 2}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(image, "L").save(folder / f"{i}.png")
    ds = load_dataset(str(tmp_path), test_split=0.25)
    assert ds.x_train.shape == (6, 7, 9, 1)
    assert sorted(np.concatenate([ds.y_train, ds.y_test]).tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert ds.info["classes"] == ["class_0", "class_1"]
    every = np.sort(np.concatenate([ds.x_train, ds.x_test]).reshape(8, -1), axis=0)
    np.testing.assert_allclose(every, np.sort(images.reshape(8, -1) / 255.0, axis=0), rtol=1e-6)


def test_rgb_jpeg_folder(tmp_path):
    for i in range(4):
        Image.new("RGB", (5, 4), (10 * i, 200, 30)).save(tmp_path / f"{i}.jpg")
    ds = load_dataset(str(tmp_path), test_split=0.25)
    assert ds.x_train.shape == (3, 4, 5, 3)


def test_tables_npy_and_csv_are_min_max_scaled(tmp_path):
    table = np.random.default_rng(0).normal(5.0, 3.0, size=(50, 3))
    np.save(tmp_path / "t.npy", table)
    with open(tmp_path / "t.csv", "w") as f:
        f.write("a,b,c\n" + "\n".join(",".join(f"{v:.17g}" for v in row) for row in table))
    for name in ("t.npy", "t.csv"):
        ds = load_dataset(str(tmp_path / name), test_split=0.2)
        assert ds.info["kind"] == "vector" and ds.info["likelihood"] == "gaussian"
        assert ds.x_train.shape == (40, 3)
        np.testing.assert_allclose(ds.x_train.min(axis=0), 0.0, atol=1e-6)
        np.testing.assert_allclose(ds.x_train.max(axis=0), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "truncated, corrupt"),
        (lambda p: np.savez(p, images=np.zeros((3, 2, 2))), "expected 'x_train' and 'x_test'"),
        (lambda p: np.savez(p, x=np.zeros((0, 4, 4))), "empty"),
        (lambda p: np.savez(p, x=np.full((5, 4, 4), np.nan)), "NaN or inf"),
        (lambda p: np.savez(p, x=np.full((5, 4, 4), 300.0)), "expected [0, 1] or 0..255"),
        (lambda p: np.savez(p, x=np.full((5, 4, 4), 1000, "int32")), "up to 1000; expected 0..255"),
    ],
)
def test_bad_npz_fails_clearly(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_dataset(str(path))


def test_truncated_npz(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, x_train=_images(20), x_test=_images(5))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(str(path))


def test_truncated_and_corrupt_idx(tmp_path):
    raw = str(tmp_path / "train-images-idx3-ubyte")
    payload = _write_idx(raw, _images(6, 4, 4))
    with open(raw, "wb") as f:
        f.write(payload[:-7])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(raw)
    gz = str(tmp_path / "x-idx3-ubyte.gz")
    with open(gz, "wb") as f:
        f.write(gzip.compress(payload)[:-12])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(gz)
    wrong = str(tmp_path / "w-idx3-ubyte")
    _write_idx(wrong, np.arange(6, dtype=np.uint8), magic=0x00000801)
    with pytest.raises(DataError, match="magic number"):
        load_dataset(wrong)


def test_png_folder_failures(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    Image.new("L", (9, 8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="Images differ in size.*8x8.*9x8"):
        load_dataset(str(tmp_path))
    os.remove(tmp_path / "b.png")
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "c.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"c\.png.*truncated or corrupt"):
        load_dataset(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no PNG/JPEG images"):
        load_dataset(str(empty))


def test_csv_with_text_in_the_middle(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("1,2\n3,4\n5,oops\n")
    with pytest.raises(DataError, match="line 3"):
        load_dataset(str(path))


def test_offline_mnist_says_how_to_pass_a_local_copy(tmp_path, monkeypatch):
    # An empty KERAS_HOME forces a download, which this offline machine cannot do.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    try:
        load_dataset("mnist")
    except DataError as e:
        assert "--data /path/to/mnist.npz" in str(e)
    else:  # a machine with network access downloads it: then the data must be right
        ds = load_dataset("mnist", limit=10)
        assert ds.x_train.shape == (10, 28, 28, 1)


def test_make_dataset_epochs_are_seeded_permutations():
    x = np.arange(10, dtype="float32")[:, None]
    once = [b.numpy()[:, 0].tolist() for b in make_dataset(x, 4)]
    assert once == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    stream = iter(make_dataset(x, 4, shuffle=True, seed=0))
    epochs = [np.concatenate([next(stream).numpy()[:, 0] for _ in range(3)]) for _ in range(3)]
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(10))
    assert not np.array_equal(epochs[0], epochs[1])
    # Starting at epoch 2 (a resumed run) gives exactly the epoch-2 order of a full run.
    resumed = iter(make_dataset(x, 4, shuffle=True, seed=0, first_epoch=2))
    np.testing.assert_array_equal(
        np.concatenate([next(resumed).numpy()[:, 0] for _ in range(3)]), epochs[2]
    )


def test_padded_batches_are_full_and_their_padding_weighs_nothing():
    x = np.arange(10, dtype="float32")[:, None]
    once = [[t.numpy() for t in batch] for batch in make_dataset(x, 4, padded=True)]
    assert [b[0][:, 0].tolist() for b in once] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]]
    assert [b[2].tolist() for b in once] == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]]
    assert all(b[1].shape == (4, 0) for b in once)  # no condition: an empty one
    # The real examples of each epoch are the unpadded stream's, in its order, with their own
    # labels; only the last batch is topped up.
    plain = iter(make_dataset(x, 4, shuffle=True, seed=0, y=np.arange(10) * 10))
    padded = iter(make_dataset(x, 4, shuffle=True, seed=0, y=np.arange(10) * 10, padded=True))
    for _ in range(2 * 3):
        (xa, ya), (xb, yb, w) = next(plain), (t.numpy() for t in next(padded))
        real = w.astype(bool)
        assert xb.shape == (4, 1) and real.sum() == len(xa)
        np.testing.assert_array_equal(xb[real], xa.numpy())
        np.testing.assert_array_equal(yb[real], ya.numpy())
        np.testing.assert_array_equal(yb[real], xb[real, 0] * 10)


def test_dynamic_binarization_draws_fresh_pixels():
    x = np.full((10, 4), 0.5, dtype="float32")
    stream = iter(make_dataset(x, 10, shuffle=True, seed=0, binarize=True))
    first, second = next(stream).numpy(), next(stream).numpy()
    assert set(np.unique(first)) == {0.0, 1.0} and 0.2 < first.mean() < 0.8
    assert not np.array_equal(first, second)
    again = next(iter(make_dataset(x, 10, shuffle=True, seed=0, binarize=True))).numpy()
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("labels_name", ["train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"])
def test_a_single_idx_images_file_reads_the_labels_beside_it(tmp_path, labels_name):
    images, labels = _images(12, 4, 4), (np.arange(12) % 3).astype(np.uint8)
    path = str(tmp_path / "train-images-idx3-ubyte.gz")
    _write_idx(path, images)
    assert load_dataset(path, test_split=0.25).y_train is None  # no labels file yet
    _write_idx(str(tmp_path / labels_name), labels, magic=0x00000801)
    ds = load_dataset(path, test_split=0.25)
    assert ds.y_train is not None and len(ds.y_train) == 9 and len(ds.y_test) == 3
    # Each image keeps its own label through the split.
    for x, y in zip(ds.x_train, ds.y_train, strict=True):
        row = np.argmin(np.abs(images / 255.0 - x[..., 0]).max(axis=(1, 2)))
        assert labels[row] == y


def test_a_labels_file_of_another_count_is_a_data_error(tmp_path):
    path = str(tmp_path / "train-images-idx3-ubyte")
    _write_idx(path, _images(12, 4, 4))
    labels = str(tmp_path / "train-labels-idx1-ubyte")
    _write_idx(labels, np.zeros(10, np.uint8), magic=0x00000801)
    with pytest.raises(DataError) as error:
        load_dataset(path)
    assert str(error.value) == (
        f"{labels!r} has 10 labels for 12 images in {path!r}; expected one label per image. "
        "Put the matching labels file beside it or remove it."
    )


def test_a_folder_of_test_idx_files_only_says_what_it_found_and_needs(tmp_path):
    test = str(tmp_path / "t10k-images-idx3-ubyte.gz")
    _write_idx(test, _images(5, 4, 4))
    _write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.zeros(5, np.uint8), 0x00000801)
    with pytest.raises(DataError) as error:
        load_dataset(str(tmp_path))
    assert str(error.value) == (
        f"The folder {str(tmp_path)!r} holds only test IDX files (t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz); a folder needs the training images "
        "train-images-idx3-ubyte[.gz] (t10k-* and labels optional). Add it, or pass --data "
        f"{test!r} to train on the test images alone."
    )
    # The file it names does load, with its labels.
    assert load_dataset(test, test_split=0.2).y_train is not None


def test_a_folder_without_data_lists_what_it_holds(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError) as error:
        load_dataset(str(tmp_path))
    assert str(error.value) == (
        f"The folder {str(tmp_path)!r} holds no PNG/JPEG images and no IDX training images "
        "(train-images-idx3-ubyte[.gz]); it holds notes.txt. Nothing to train on: point --data "
        "at a folder of images, an IDX folder or file, or a .npz/.npy/.csv file."
    )
