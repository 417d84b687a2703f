"""The named data sets of `load_dataset`: `LOADERS`, name to a loader of raw arrays (digits,
digits28, photos64, ring offline; mnist, fashion_mnist through keras.datasets)."""

import numpy as np

from keras_vae.training.data_files import DataError


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixels are counts 0..16 of a 4x4 block; /16 gives [0, 1].
    x = (digits.images / 16.0).astype("float32")[..., None]
    return {"x": x, "y": digits.target, "kind": "image", "scaled": "divided by 16"}


DIGITS28_BOX = 20  # MNIST's digits fill a 20x20 box centred in 28x28


def _digits28():
    """The 1797 digits at MNIST's size: (1797, 28, 28, 1) float32 in [0, 1], labels 0..9.

    Each 8x8 digit is upsampled bicubically to 20x20 and centred in a black 28x28 frame (a
    4-pixel border), the layout of MNIST, so a model or test built for MNIST's shape runs on
    real digits offline. Bicubic overshoot is clipped to [0, 1]. 5.6 MB; about 0.1 s after
    scikit-learn's import.
    """
    from PIL import Image

    raw = _digits()
    small = raw["x"][..., 0]
    border = (28 - DIGITS28_BOX) // 2
    x = np.zeros((len(small), 28, 28, 1), dtype="float32")
    for image, out in zip(small, x, strict=True):
        big = Image.fromarray(image, "F").resize((DIGITS28_BOX, DIGITS28_BOX), Image.BICUBIC)
        out[border : border + DIGITS28_BOX, border : border + DIGITS28_BOX, 0] = np.asarray(big)
    np.clip(x, 0.0, 1.0, out=x)
    scaled = (
        f"divided by 16, bicubic 8x8 -> {DIGITS28_BOX}x{DIGITS28_BOX}, centred in 28x28 "
        "(clipped to [0, 1])"
    )
    return {"x": x, "y": raw["y"], "kind": "image", "scaled": scaled}


PHOTOS64_SIZE = 64
# Patches per photograph at each downscaling factor. At full size a 64x64 patch is texture
# (tiles, petals); at 1/4 it holds a whole flower or the pagoda's roofs.
PHOTOS64_PATCHES = {1: 500, 2: 300, 4: 200}
PHOTOS64_NAMES = ("china", "flower")


def _photos64(patches=PHOTOS64_PATCHES, seed=0):
    """Colour patches of scikit-learn's two sample photographs, for a Gaussian likelihood.

    From china.jpg and flower.jpg (427x640 RGB each) and their copies downscaled by 2 and 4
    (Lanczos), `patches[factor]` 64x64 patches each at positions drawn from `seed`: by default
    2 photos x (500 + 300 + 200) = 2000 patches, (2000, 64, 64, 3) float32 in [0, 1], 98,304,000
    bytes. The label is the photo (0 china, 1 flower; `info["classes"]`), so the latent scatter
    shows whether the model tells the two scenes apart. The patches overlap and come from two
    photos only: a random held-out split measures fit to these scenes, not to new photographs.
    About 0.3 s after scikit-learn's import.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    size = PHOTOS64_SIZE
    count = len(PHOTOS64_NAMES) * sum(patches.values())
    # uint8 while cutting, then one float32 array scaled in place: the peak stays near its size.
    cut = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty(count, dtype="int64")
    i = 0
    for label, photo in enumerate(load_sample_images().images):
        for factor, n in patches.items():
            scaled = photo
            if factor > 1:
                shape = (photo.shape[1] // factor, photo.shape[0] // factor)
                scaled = np.asarray(Image.fromarray(photo).resize(shape, Image.LANCZOS))
            tops = rng.integers(0, scaled.shape[0] - size + 1, n)
            lefts = rng.integers(0, scaled.shape[1] - size + 1, n)
            for top, left in zip(tops, lefts, strict=True):
                cut[i] = scaled[top : top + size, left : left + size]
                i += 1
            labels[i - n : i] = label
    x = cut.astype("float32")
    x /= 255.0
    return {
        "x": x,
        "y": labels,
        "kind": "image",
        "scaled": "divided by 255",
        "likelihood": "gaussian",
        "classes": list(PHOTOS64_NAMES),
    }


def _ring(num_examples=5000, seed=1234):
    # The seed's toy: z ~ N(0, I) in 2-D mapped onto a ring by g(z) = z/10 + z/||z||.
    z = np.random.default_rng(seed).standard_normal((num_examples, 2))
    x = z / 10 + z / np.linalg.norm(z, axis=1, keepdims=True)
    return {"x": x.astype("float32"), "y": None, "kind": "vector", "scaled": "none (raw g(z))"}


def _keras_dataset(name):
    def load():
        import keras

        module = getattr(keras.datasets, name)
        try:
            (x_train, y_train), (x_test, y_test) = module.load_data()
        except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
            raise DataError(
                f"Could not load {name} through keras.datasets (it downloads on first use and "
                f"this machine may be offline: {type(e).__name__}: {str(e)[:120]}). Pass a local "
                f"copy instead: --data /path/to/{name}.npz (the Keras layout with x_train, "
                "y_train, x_test, y_test) or --data a folder with the IDX files "
                "train-images-idx3-ubyte.gz and t10k-images-idx3-ubyte.gz."
            ) from None
        return {
            "x_train": x_train,
            "x_test": x_test,
            "y_train": y_train,
            "y_test": y_test,
            "kind": "image",
        }

    return load


# Name -> a function of no arguments returning a dict: "x" (and "y") or "x_train", "x_test"
# (and "y_train", "y_test"), "kind" ("image"/"vector"/None to infer), and optionally "scaled"
# (what info["scaled"] says; vectors with it skip the min-max scaling), "likelihood" (the
# suggested one, where not the kind's default) and "classes" (label names).
LOADERS = {
    "digits": _digits,
    "digits28": _digits28,
    "photos64": _photos64,
    "ring": _ring,
    "mnist": _keras_dataset("mnist"),
    "fashion_mnist": _keras_dataset("fashion_mnist"),
}
