"""Reading one image file safely into a greyscale array.

Ultrasound images are greyscale, but they arrive as 8-bit or 16-bit greyscale, RGB, palette,
RGBA or even CMYK files.  Every reader in the package goes through :func:`read_image`, so
that every odd file gets the same clear warning or error naming the file, and the file itself
is only ever opened for reading.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
MIN_SIZE = 32
MAX_PIXELS = 50_000_000  # far above any ultrasound frame; larger is treated as a decompression bomb


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file and what to do."""


class ImageWarning(UserWarning):
    """An image file that was usable only after a conversion the reader should know about."""


def _warn(path: Path, message: str) -> None:
    warnings.warn(f"{path}: {message}", ImageWarning, stacklevel=3)


def _to_grey(image: Image.Image, path: Path) -> np.ndarray:
    """Convert any PIL mode to an 8-bit greyscale array, warning about lossy conversions."""
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if mode == "RGB":
        return np.asarray(image.convert("L"), dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        _warn(path, f"{mode} image (more than 8 bits) rescaled to 8 bits from its own range [{low:g}, {high:g}]")
        if high == low:
            return np.zeros(values.shape, dtype=np.uint8)
        return np.round((values - low) / (high - low) * 255).astype(np.uint8)
    if mode in ("RGBA", "LA", "PA"):
        _warn(path, f"{mode} image: the alpha (transparency) channel was dropped")
        return np.asarray(image.convert("RGBA").convert("RGB").convert("L"), dtype=np.uint8)
    if mode == "P":
        _warn(path, "palette image converted to greyscale")
        return np.asarray(image.convert("RGB").convert("L"), dtype=np.uint8)
    if mode == "CMYK":
        _warn(path, "CMYK image (a print colour space) converted to greyscale")
        return np.asarray(image.convert("RGB").convert("L"), dtype=np.uint8)
    if mode == "1":
        _warn(path, "1-bit black-and-white image: it carries no grey levels")
        return np.asarray(image.convert("L"), dtype=np.uint8)
    raise ImageError(f"{path}: unsupported image mode {mode!r}; save it as 8-bit greyscale or RGB PNG")


def read_image(
    path: str | Path,
    size: int | None = None,
    *,
    min_size: int = MIN_SIZE,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read an image file as an 8-bit greyscale array, optionally resized to ``size``×``size``.

    Raises :class:`ImageError` (naming the file) for anything that is not a usable image:
    non-image files, corrupt or truncated files, images smaller than ``min_size`` pixels on
    a side, and images with more than ``max_pixels`` pixels (decompression bombs).  Lossy but
    workable conversions (16-bit, palette, alpha, CMYK) go through with an :class:`ImageWarning`.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{path}: {width}x{height} pixels is more than {max_pixels:,}; refusing to decode "
                    "a possible decompression bomb. Downscale the image if it is genuine."
                )
            if min(width, height) < min_size:
                raise ImageError(
                    f"{path}: {width}x{height} pixels is too small (at least {min_size} on each side needed)"
                )
            image.load()
            grey = _to_grey(image, path)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"{path}: refused as a decompression bomb ({error})") from error
    except UnidentifiedImageError as error:
        raise ImageError(f"{path}: not an image file that can be read (is it really a PNG/JPEG?)") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: corrupt or truncated image ({error}); re-export the file") from error
    if size is not None:
        grey = resize(grey, size)
    return grey


def resize(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize a greyscale array to ``size``×``size`` (aspect ratio not kept, as Keras' loaders do)."""
    if grey.shape == (size, size):
        return grey
    image = Image.fromarray(grey)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.uint8)


def is_image_name(path: Path) -> bool:
    """True when the file name has an image suffix we read."""
    return path.suffix.lower() in IMAGE_SUFFIXES
