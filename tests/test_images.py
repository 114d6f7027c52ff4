"""Reading single image files: every odd format warns or fails with the file's name."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from busutils.images import ImageError, ImageWarning, read_image


def _ramp(h: int = 64, w: int = 80) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % 256).astype(np.uint8)


def test_greyscale_png_is_read_exactly(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_ramp()).save(path)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (64, 80)
    np.testing.assert_array_equal(image, _ramp())


def test_resize_gives_square_uint8(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_ramp()).save(path)
    assert read_image(path, 48).shape == (48, 48)


def test_rgb_is_converted_without_warning(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.stack([_ramp()] * 3, axis=-1)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(path)
    np.testing.assert_array_equal(image, _ramp())


def test_16_bit_is_rescaled_with_warning(tmp_path):
    path = tmp_path / "deep.png"
    values = (np.arange(64 * 64).reshape(64, 64) * 10).astype(np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    with pytest.warns(ImageWarning, match="deep.png.*8 bits"):
        image = read_image(path)
    assert image.min() == 0 and image.max() == 255


@pytest.mark.parametrize(
    "mode, suffix, pattern",
    [("P", ".png", "palette"), ("RGBA", ".png", "alpha"), ("CMYK", ".jpg", "CMYK"), ("LA", ".png", "alpha")],
)
def test_odd_modes_warn_and_convert(tmp_path, mode, suffix, pattern):
    path = tmp_path / f"odd{suffix}"
    Image.fromarray(np.stack([_ramp()] * 3, axis=-1)).convert(mode).save(path)
    with pytest.warns(ImageWarning, match=f"odd{suffix}.*{pattern}"):
        image = read_image(path)
    assert image.shape == (64, 80) and image.dtype == np.uint8


def test_corrupt_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(ImageError, match="corrupt.png"):
        read_image(path)


def test_truncated_file_is_an_error(tmp_path):
    good = tmp_path / "good.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 128), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated.png.*(corrupt|truncated)"):
        read_image(bad)


def test_text_file_named_png_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(ImageError, match="notes.png: not an image"):
        read_image(path)


def test_too_small_image_is_refused(tmp_path):
    path = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(path)
    with pytest.raises(ImageError, match="tiny.png.*too small"):
        read_image(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("L", (9000, 6000)).save(path)  # 54 Mpx of zeros: a few kB on disk
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageError, match="bomb.png.*decompression bomb"):
        read_image(path)
    with pytest.raises(ImageError, match="decompression bomb"):
        read_image(path, max_pixels=1000)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "absent.png")
