"""A folder of PNG/JPEG images in: one class per immediate subfolder, pixels read faithfully.

The folder and its immediate subfolders are listed, nothing deeper: the documented layout
(images, or one subfolder of images per class) needs no more, and `--data /` must not walk the
whole file system. Every image's header is read first, so mixed sizes and a total over the memory
budget are refused before any pixel is decoded. 16-bit greyscale keeps its 65,536 levels;
transparency, which the VAE cannot represent, is dropped only when every pixel is opaque.
"""

import os

import numpy as np

from keras_vae.training.data_files import DataError, check_regular_file, claim_memory

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _entries(folder):
    """`(files, subfolders)` of `folder`, each sorted by name; symlinked folders are not
    entered (as os.walk without followlinks did)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        subfolders = [e.path for e in entries if _is_dir(e) and not e.is_symlink()]
        files = [e for e in entries if not _is_dir(e)]
    except OSError as e:
        raise DataError(
            f"Could not list the folder {folder!r} ({type(e).__name__}: {e.strerror}); make it "
            "readable or move it out of the data folder."
        ) from None
    return files, subfolders


def _is_dir(entry):
    # A link in a loop (b.png -> b.png) cannot be followed: it is an entry like a file here, so
    # that check_regular_file names it, rather than the whole folder failing to list.
    try:
        return entry.is_dir()
    except OSError:
        return False


def _image_files(folder):
    """Image paths in `folder` then in each immediate subfolder, and whether it has any."""
    files, subfolders = _entries(folder)
    for sub in subfolders:
        files += _entries(sub)[0]
    images = [e.path for e in files if e.name.lower().endswith(IMAGE_SUFFIXES)]
    for path in images:
        check_regular_file(path)
    return images, bool(subfolders)


def _no_images(folder, has_subfolders):
    names = sorted(os.listdir(folder))
    found = "it is empty" if not names else f"it holds {', '.join(names[:5])}"
    found += ", ..." if len(names) > 5 else ""
    if has_subfolders:
        found += " (images are looked for in it and its immediate subfolders only)"
    return DataError(
        f"The folder {folder!r} holds no PNG/JPEG images and no IDX training images "
        f"(train-images-idx3-ubyte[.gz]); {found}. Nothing to train on: point --data at a "
        "folder of images, an IDX folder or file, or a .npz/.npy/.csv file."
    )


def _decode_error(path, e):
    return DataError(
        f"Could not decode image {path!r} ({type(e).__name__}: {e}); the file is "
        "truncated or corrupt. Remove or replace it."
    )


def _headers(files):
    """`(width, height, channels)` of the images, all one size, from their headers alone."""
    from PIL import Image

    first = None
    channels = 1
    for path in files:
        try:
            with Image.open(path) as image:
                size, mode = image.size, image.mode
        except Image.DecompressionBombError as e:
            raise DataError(
                f"Image {path!r} is too large to decode safely ({e}). Resize it."
            ) from None
        except Exception as e:  # noqa: BLE001 - Pillow raises many types on bad bytes
            raise _decode_error(path, e) from None
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise DataError(
                f"Images differ in size: {first[0]!r} is {first[1][0]}x{first[1][1]} (WxH) but "
                f"{path!r} is {size[0]}x{size[1]}. Resize them to one size."
            )
        channels = max(channels, 1 if mode in GREY_MODES else 3)
    return (*first[1], channels)


def _check_opaque(image, path):
    """Refuses transparency: dropping it would silently change what the image shows."""
    if image.mode in SIXTEEN_BIT_MODES:
        # Pillow's conversions ignore a 16-bit image's transparent grey level; test it here.
        alpha = np.where(np.asarray(image) == image.info["transparency"], 0, 255)
    else:
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
    clear = int((alpha < 255).sum())
    if clear:
        raise DataError(
            f"Image {path!r} has {clear} of {alpha.size} pixels (partly) transparent; the VAE "
            "reads no alpha channel. Flatten it onto a background (e.g. "
            "Image.alpha_composite(Image.new('RGBA', im.size, 'white'), im).convert('RGB')) "
            "or save it as RGB or greyscale without transparency."
        )


def _pixels(image, path):
    """The pixels `(H, W, C)` and the divisor that maps them to [0, 1] (255 or 65535)."""
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        _check_opaque(image, path)
    if image.mode in SIXTEEN_BIT_MODES:
        # convert("L") clips 16-bit levels above 255 to white: two levels left of 65,536.
        array = np.asarray(image).astype(np.uint32)
        if array.max(initial=0) > 65535:
            raise DataError(
                f"Image {path!r} holds pixel values up to {array.max()}; expected 8- or 16-bit "
                "pixels (0..65535). Save it as an 8- or 16-bit PNG."
            )
        return array.astype(np.uint16)[..., None], 65535
    array = np.asarray(image.convert("L" if image.mode in GREY_MODES else "RGB"))
    return (array[..., None] if array.ndim == 2 else array), 255


def _decode(path):
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return _pixels(image, path)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on bad bytes
        raise _decode_error(path, e) from None


def _stack(decoded, channels):
    """One array of the images: uint8 when all are 8-bit, else float32 in [0, 1]."""
    images = [np.repeat(a, 3, axis=-1) if a.shape[-1] < channels else a for a, _ in decoded]
    divisors = {d for _, d in decoded}
    if divisors == {255}:
        return np.stack(images), None
    x = np.empty((len(images), *images[0].shape), dtype="float32")
    for out, image, (_, divisor) in zip(x, images, decoded, strict=True):
        np.divide(image, divisor, out=out)
    scaled = "16-bit divided by 65535" + (", 8-bit by 255" if 255 in divisors else "")
    return x, scaled


def load_image_folder(folder):
    files, has_subfolders = _image_files(folder)
    if not files:
        raise _no_images(folder, has_subfolders)
    width, height, channels = _headers(files)
    claim_memory(
        f"The {len(files)} images in {folder!r} are {width}x{height} with {channels} channel(s)",
        len(files) * width * height * channels,
    )
    classes = sorted({os.path.relpath(os.path.dirname(f), folder) for f in files})
    x, scaled = _stack([_decode(path) for path in files], channels)
    labels = None
    if len(classes) > 1:
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[os.path.relpath(os.path.dirname(f), folder)] for f in files])
    raw = {"x": x, "y": labels, "kind": "image", "classes": classes}
    if scaled:
        raw["scaled"] = scaled
    return raw
