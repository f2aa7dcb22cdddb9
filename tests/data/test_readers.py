"""read_image: PNG 8/16-bit, JPEG, colour/alpha/palette, TIFF, DICOM (by hand-computed values), errors;
find_images: which files of a folder are images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcolor.data.readers import (
    IMAGE_EXTENSIONS,
    find_images,
    image_bit_depth,
    load_reduced,
    read_image,
    reduce_image,
    reduced_shape,
    to_float,
)
from medcolor.errors import ImageReadError


def _pil_gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32) / np.float32(255)


# ------------------------------------------------------------------------------------------ PIL formats


def test_png_8bit_gray_exact(tmp_path: Path) -> None:
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(arr).save(tmp_path / "g.png")
    img, bits = read_image(tmp_path / "g.png", return_bits=True)
    assert bits == 8 and img.dtype == np.float32 and img.shape == (16, 16)
    assert np.array_equal(img, arr.astype(np.float32) / np.float32(255))
    assert img.min() == 0.0 and img.max() == 1.0


def test_png_16bit_keeps_precision(tmp_path: Path) -> None:
    # values that 8 bits cannot tell apart: 1000, 1001, 1002 ... and the extremes
    arr = np.array([[0, 1, 1000, 1001], [1002, 32768, 65534, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    img, bits = read_image(tmp_path / "g16.png", return_bits=True)
    assert bits == 16 and image_bit_depth(tmp_path / "g16.png") == 16
    assert np.array_equal(img, arr.astype(np.float32) / np.float32(65535))
    assert len(np.unique(img)) == 8  # nothing collapsed
    assert np.array_equal(np.rint(img * 65535).astype(np.uint16), arr)


def test_tiff_16bit(tmp_path: Path) -> None:
    arr = (np.arange(64, dtype=np.uint16) * 1000 + 7).reshape(8, 8)
    Image.fromarray(arr).save(tmp_path / "g16.tif")
    img, bits = read_image(tmp_path / "g16.tif", return_bits=True)
    assert bits == 16
    assert np.array_equal(img, arr.astype(np.float32) / np.float32(65535))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "1"])
def test_colour_alpha_palette_reduce_to_luminance(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(12, 10, 4), dtype=np.uint8)
    im = Image.fromarray(rgba, "RGBA")
    if mode == "RGB":
        im = im.convert("RGB")
    elif mode == "LA":
        im = im.convert("LA")
    elif mode == "P":
        im = im.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    elif mode == "1":
        im = im.convert("1")
    path = tmp_path / f"c_{mode}.png"
    im.save(path)
    img, bits = read_image(path, return_bits=True)
    assert bits == 8 and img.shape == (12, 10) and img.dtype == np.float32
    assert np.array_equal(img, _pil_gray(path))
    if mode == "RGB":  # ITU-R 601-2 luminance, alpha ignored
        r, g, b = (rgba[..., k].astype(np.float64) for k in range(3))
        expected = (r * 299 + g * 587 + b * 114) / 1000 / 255
        assert np.abs(img - expected).max() <= 0.5 / 255 + 1e-6


def test_rgba_alpha_is_ignored(tmp_path: Path) -> None:
    rgb = np.full((4, 4, 3), 200, dtype=np.uint8)
    alpha = np.zeros((4, 4, 1), dtype=np.uint8)  # fully transparent
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(tmp_path / "a.png")
    assert np.allclose(read_image(tmp_path / "a.png"), 200 / 255)


def test_jpeg_matches_pil(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "c.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(tmp_path / "g.jpeg")
    for name in ("c.jpg", "g.jpeg"):
        img = read_image(tmp_path / name)
        assert img.shape == (20, 30)
        assert np.array_equal(img, _pil_gray(tmp_path / name))


def test_real_covid_files_match_pil(covid) -> None:
    """One real file per colour mode of the COVID collection (RGB, RGBA, P PNG; L JPEG)."""
    wanted = {"RGB", "RGBA", "P", "L"}
    seen: dict[str, Path] = {}
    for p in covid.paths:
        if not wanted - set(seen):
            break
        with Image.open(p) as im:
            seen.setdefault(im.mode, p)
    assert wanted <= set(seen), f"modes found: {sorted(seen)}"
    for mode in sorted(wanted):
        p = seen[mode]
        img, bits = read_image(p, return_bits=True)
        assert bits == 8 and img.dtype == np.float32 and img.ndim == 2
        assert img.min() >= 0.0 and img.max() <= 1.0
        assert np.array_equal(img, _pil_gray(p)), f"{p.name} ({mode})"


# ------------------------------------------------------------------------------------------ DICOM

PIX12 = np.array([[0, 1000, 2048], [3000, 4095, 17]], dtype=np.uint16)


def test_dicom_monochrome2_12bit_scaled_by_stored_range(tmp_path: Path, write_dicom) -> None:
    p = write_dicom(tmp_path / "m2.dcm", PIX12, bits_stored=12)
    img, bits = read_image(p, return_bits=True)
    assert bits == 16 and image_bit_depth(p) == 16
    assert img.dtype == np.float32 and img.shape == (2, 3)
    np.testing.assert_allclose(img, PIX12 / 4095.0, rtol=0, atol=1e-7)


def test_dicom_monochrome1_inverted(tmp_path: Path, write_dicom) -> None:
    p = write_dicom(tmp_path / "m1.dcm", PIX12, photometric="MONOCHROME1", bits_stored=12)
    np.testing.assert_allclose(read_image(p), 1.0 - PIX12 / 4095.0, atol=1e-7)


def test_dicom_rescale_without_window(tmp_path: Path, write_dicom) -> None:
    # HU-like: y = 2 x - 1024; the stored range [0, 4095] maps to [-1024, 7166]
    p = write_dicom(tmp_path / "r.dcm", PIX12, slope=2.0, intercept=-1024.0)
    hu = PIX12 * 2.0 - 1024.0
    np.testing.assert_allclose(read_image(p), (hu + 1024.0) / (7166.0 + 1024.0), atol=1e-7)


def test_dicom_rescale_then_linear_window_then_monochrome1(tmp_path: Path, write_dicom) -> None:
    p = write_dicom(
        tmp_path / "w.dcm",
        PIX12,
        photometric="MONOCHROME1",
        slope=2.0,
        intercept=-1024.0,
        center=1024.0,
        width=2000.0,
    )
    hu = PIX12 * 2.0 - 1024.0  # [[-1024, 976, 3072], [4976, 7166, -990]]
    # DICOM LINEAR: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped to [0, 1]
    linear = np.clip((hu - 1023.5) / 1999.0 + 0.5, 0, 1)
    expected = 1.0 - linear
    assert expected[0, 1] == pytest.approx(1.0 - ((976 - 1023.5) / 1999 + 0.5))
    assert expected[0, 0] == 1.0 and expected[1, 2] == 1.0  # below the window -> black -> inverted white
    assert expected[0, 2] == 0.0 and expected[1, 0] == 0.0 and expected[1, 1] == 0.0  # above
    np.testing.assert_allclose(read_image(p), expected, atol=1e-6)


def test_dicom_linear_exact_window(tmp_path: Path, write_dicom) -> None:
    p = write_dicom(tmp_path / "le.dcm", PIX12, center=2048.0, width=4096.0, voi_function="LINEAR_EXACT")
    np.testing.assert_allclose(read_image(p), np.clip((PIX12 - 2048.0) / 4096.0 + 0.5, 0, 1), atol=1e-6)


def test_dicom_8bit(tmp_path: Path, write_dicom) -> None:
    pix = np.array([[0, 128, 255]], dtype=np.uint8)
    p = write_dicom(tmp_path / "b8.dcm", pix, bits_stored=8)
    img, bits = read_image(p, return_bits=True)
    assert bits == 8
    np.testing.assert_allclose(img, pix / 255.0, atol=1e-7)


def test_dicom_detected_by_content_without_extension(tmp_path: Path, write_dicom) -> None:
    p = write_dicom(tmp_path / "noext", PIX12)
    np.testing.assert_allclose(read_image(p), PIX12 / 4095.0, atol=1e-7)


# ------------------------------------------------------------------------------------------ errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"not found: .*nope\.png"):
        read_image(tmp_path / "nope.png")


def test_corrupt_png(tmp_path: Path) -> None:
    bad = tmp_path / "junk.png"
    bad.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageReadError) as e:
        read_image(bad)
    assert "junk.png" in str(e.value) and "corrupt" in str(e.value)


def test_truncated_png(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png"):
        read_image(tmp_path / "cut.png")


def test_empty_file_and_directory(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg.*empty"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_dicom_without_pixels(tmp_path: Path, write_dicom) -> None:
    import pydicom

    p = write_dicom(tmp_path / "x.dcm", PIX12)
    ds = pydicom.dcmread(p)
    del ds.PixelData
    ds.save_as(p)
    with pytest.raises(ImageReadError, match=r"x\.dcm.*no pixel data"):
        read_image(p)


@pytest.mark.parametrize("fill", ["all-nan", "all-inf", "one-nan", "one-minus-inf"])
def test_float_image_with_nan_or_inf_is_an_error_not_a_constant_image(tmp_path: Path, fill: str) -> None:
    arr = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    if fill.startswith("all"):
        arr[:] = np.nan if fill == "all-nan" else np.inf
    else:
        arr[3, 4] = np.nan if fill == "one-nan" else -np.inf
    Image.fromarray(arr).save(tmp_path / "f.tif")
    what = "all pixels" if fill.startswith("all") else "1 of 64 pixels"
    with pytest.raises(ImageReadError, match=rf"f\.tif: {what} .* NaN or infinite"):
        read_image(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match=r"f\.tif"):
        load_reduced(tmp_path / "f.tif", 4)  # the reduced path (cache, load_size) too


@pytest.mark.parametrize(
    ("tags", "match"),
    [
        ({"slope": 0.0, "intercept": 100.0}, "RescaleSlope is '0.0'"),
        ({"slope": 0.0, "intercept": 0.0, "center": 100.0, "width": 50.0}, "RescaleSlope is '0.0'"),
        ({"center": 100.0, "width": float("nan")}, "WindowWidth nan is not finite"),
        ({"photometric": "PALETTE COLOR"}, "PhotometricInterpretation 'PALETTE COLOR'"),
        ({"photometric": "RGB"}, "PhotometricInterpretation 'RGB' with one sample"),
    ],
)
def test_dicom_tags_that_would_give_a_wrong_image(tmp_path: Path, write_dicom, tags: dict, match: str) -> None:
    p = write_dicom(tmp_path / "odd.dcm", PIX12, **tags)
    with pytest.raises(ImageReadError, match=rf"DICOM {tmp_path}/odd\.dcm: .*{match}"):
        read_image(p)


# ------------------------------------------------------------------------------------------ reducing


def test_reduce_short_side_aspect_and_no_upscale() -> None:
    img = np.random.default_rng(0).random((300, 450), dtype=np.float32)
    out = reduce_image(img, 100, 8)
    assert out.dtype == np.uint8 and out.shape == (100, 150)
    assert reduced_shape(450, 300, 100) == (150, 100)
    small = reduce_image(img[:50, :80], 100, 16)  # never upscaled
    assert small.shape == (50, 80) and small.dtype == np.uint16
    assert np.array_equal(to_float(small), np.rint(img[:50, :80] * 65535).astype(np.uint16) / np.float32(65535))
    # quantizing an 8-bit image unchanged in size is lossless
    u8 = (img * 255).astype(np.uint8)
    assert np.array_equal(reduce_image(to_float(u8), None, 8), u8)


def test_load_reduced_antialiased(tmp_path: Path) -> None:
    # a 1-px checkerboard averages to mid-gray when reduced 4x (no aliasing to black/white)
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    Image.fromarray(board).save(tmp_path / "board.png")
    out = load_reduced(tmp_path / "board.png", 16)
    assert out.shape == (16, 16)
    assert np.abs(out.astype(int) - 128).max() <= 2


# ------------------------------------------------------------------------------------------ image files


def test_find_images_one_list_of_extensions(tmp_path: Path) -> None:
    names = ["b/x.PNG", "b/c/y.jpeg", "z.dcm", "a.tif", "w.webp", ".hidden.png", "b/._mac.jpg", "notes.txt", "b/z.csv"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()  # a folder named like an image is not a file
    found = find_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.tif", "b/c/y.jpeg", "b/x.PNG", "w.webp", "z.dcm"]
    assert [p.name for p in find_images(tmp_path, recursive=False)] == ["a.tif", "w.webp", "z.dcm"]
    assert [p.name for p in find_images(tmp_path, extensions={".dcm"})] == ["z.dcm"]
    assert {".png", ".jpg", ".jpeg", ".dcm", ".tif", ".tiff", ".bmp"} <= IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
