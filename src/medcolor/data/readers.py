"""Image readers: any X-ray file -> one float32 gray channel in [0, 1].

:func:`read_image` decides by content (and extension for DICOM files without the ``DICM`` preamble):

* PNG / JPEG / TIFF / BMP... through Pillow.  8-bit gray is divided by 255; 16-bit gray (``I;16*``) by 65535,
  so 12/16-bit precision is kept; 32-bit integer images (``I``) must hold values in [0, 65535] and are taken
  as 16-bit; float images (``F``) in [0, 1] are kept, others are min-max scaled.  Colour and palette images
  (RGB, RGBA, LA, P, CMYK...) are reduced to gray with Pillow's own ITU-R 601-2 luminance
  (``Image.convert("L")``: ``L = R*299/1000 + G*587/1000 + B*114/1000``); alpha is ignored, not composited.
  Multi-frame files give their first frame.  EXIF orientation is not applied (X-ray files carry none).
* DICOM through pydicom: the modality LUT (rescale slope/intercept) first, then the VOI transform: the first
  window (centre/width, with the DICOM LINEAR / LINEAR_EXACT / SIGMOID functions) maps straight to [0, 1];
  a VOI LUT sequence is applied with pydicom and scaled by the LUT's own value range.  Without any VOI the
  value range of the stored bits (``BitsStored``, ``PixelRepresentation``, after rescale) maps to [0, 1].
  MONOCHROME1 is inverted last (``1 - x``).  Colour DICOMs use the same luminance weights
  (:mod:`medcolor.data.dicom`).

Every failure (missing file, empty file, not an image, truncated data, unsupported compression) raises
:class:`~medcolor.errors.ImageReadError` naming the file and the problem; so does an image that would come
out silently wrong: NaN or infinite pixels (float TIFFs), a DICOM with RescaleSlope 0 or a non-finite
rescale / window, or a PhotometricInterpretation the reader cannot turn into gray.

:func:`load_reduced` / :func:`reduce_bytes` give the *reduced image* that datasets return with a
``load_size`` and that :class:`~medcolor.data.cache.ImageCache` stores: short side reduced to ``size``
(antialiased bilinear, aspect kept, never upscaled), quantized to uint8 (8-bit sources) or uint16
(16-bit sources).  8-bit images are reduced in uint8 by Pillow (JPEGs at a reduced DCT scale first when
at least 2x too large); 16-bit and DICOM images in float32 (:func:`reduce_image`).  :func:`to_float`
turns the result back into float32 in [0, 1].

:func:`find_images` decides which files of a folder are images (:data:`IMAGE_EXTENSIONS`, the one list).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Collection
from pathlib import Path

import numpy as np
from PIL import Image

from medcolor.data.dicom import DICOM_EXTENSIONS, decode_dicom, is_dicom
from medcolor.errors import ImageReadError

__all__ = [
    "DICOM_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "decode_image_bytes",
    "find_images",
    "has_image_extension",
    "image_bit_depth",
    "list_files",
    "load_reduced",
    "read_image",
    "reduce_bytes",
    "reduce_image",
    "reduced_shape",
    "storage_dtype",
    "to_float",
]

#: File name endings recognised as images (lower case): the one list, used by :func:`find_images` (and so
#: by :class:`~medcolor.data.datasets.FolderDataset` and by ``medcolor predict`` on a folder).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"} | DICOM_EXTENSIONS)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def storage_dtype(bits: int) -> np.dtype:
    """The dtype that stores a reduced image of ``bits`` (8 -> uint8, 16 -> uint16)."""
    if bits == 8:
        return np.dtype(np.uint8)
    if bits == 16:
        return np.dtype(np.uint16)
    raise ValueError(f"bits must be 8 or 16, not {bits!r}")


def to_float(stored: np.ndarray) -> np.ndarray:
    """uint8 / uint16 array -> float32 in [0, 1] (divided by 255 / 65535)."""
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / np.float32(255)
    if stored.dtype == np.uint16:
        return stored.astype(np.float32) / np.float32(65535)
    raise TypeError(f"expected a uint8 or uint16 array, got {stored.dtype}")


# ----------------------------------------------------------------------------------------------- reading


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {path}") from None
    except IsADirectoryError:
        raise ImageReadError(f"cannot read image {path}: it is a directory, not a file") from None
    except OSError as e:
        raise ImageReadError(f"cannot read image {path}: {e.strerror or e}") from None
    except ValueError as e:  # e.g. an embedded NUL byte
        raise ImageReadError(f"cannot read image {path!r}: {e}") from None
    if not data:
        raise ImageReadError(f"cannot read image {path}: the file is empty (0 bytes); re-create or remove it")
    return data


def read_image(path: str | os.PathLike, *, return_bits: bool = False) -> np.ndarray | tuple[np.ndarray, int]:
    """Read an X-ray image file as float32 ``(H, W)`` in [0, 1].

    With ``return_bits=True`` returns ``(array, bits)`` where ``bits`` (8 or 16) is the precision the
    source carries, i.e. the dtype a reduced copy is stored in (uint8 / uint16).
    Raises :class:`ImageReadError` naming the file for anything unreadable.
    """
    path = Path(path)
    image, bits = decode_image_bytes(_read_bytes(path), str(path))
    return (image, bits) if return_bits else image


def decode_image_bytes(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """Decode the bytes of an image file; returns ``(float32 (H, W) in [0, 1], bits)``.

    ``name`` is used in error messages and, for DICOM files without a preamble, its extension.
    """
    image, bits = decode_dicom(data, name) if is_dicom(data, name) else _decode_pil(data, name)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ImageReadError(f"cannot read image {name}: decoded to an array of shape {image.shape}, not an image")
    if not np.isfinite(image).all():  # never hand NaN/inf pixels on: they would turn the loss into NaN
        bad = int((~np.isfinite(image)).sum())
        raise ImageReadError(
            f"cannot read image {name}: {bad} of {image.size} pixels are NaN or infinite; fix the file"
        )
    return image, bits


def _decode_pil(data: bytes, name: str) -> tuple[np.ndarray, int]:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode = im.mode
            if mode == "L":
                return to_float(np.asarray(im, dtype=np.uint8)), 8
            if mode in _SIXTEEN_BIT_MODES:
                return to_float(np.asarray(im).astype(np.uint16)), 16
            if mode == "I":
                arr = np.asarray(im)
                lo, hi = int(arr.min()), int(arr.max())
                if lo < 0 or hi > 65535:
                    raise ImageReadError(
                        f"cannot read image {name}: 32-bit integer pixels span [{lo}, {hi}], outside the "
                        "16-bit range [0, 65535] that medcolor supports; convert the file to 16-bit first"
                    )
                return to_float(arr.astype(np.uint16)), 16
            if mode == "F":
                arr = np.asarray(im, dtype=np.float32)
                finite = np.isfinite(arr)
                if not finite.all():
                    what = "all" if not finite.any() else f"{int((~finite).sum())} of {arr.size}"
                    raise ImageReadError(
                        f"cannot read image {name}: {what} pixels of this floating-point image are NaN or "
                        "infinite; fix the file (e.g. replace them with the background value)"
                    )
                lo, hi = float(arr.min()), float(arr.max())
                if not (lo >= 0.0 and hi <= 1.0):
                    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
                return np.ascontiguousarray(arr, dtype=np.float32), 16
            with warnings.catch_warnings():
                # palette images with a transparency entry make Pillow warn; alpha is ignored on purpose
                warnings.simplefilter("ignore", UserWarning)
                try:
                    gray = im.convert("L")
                except ValueError:  # modes without a direct conversion (e.g. PA)
                    gray = im.convert("RGBA").convert("L")
            return to_float(np.asarray(gray, dtype=np.uint8)), 8
    except ImageReadError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise ImageReadError(
            f"cannot decode image {name}: {type(e).__name__}: {e}. The file is corrupt, truncated or not a "
            "supported image; re-download or replace it"
        ) from None


def image_bit_depth(path: str | os.PathLike) -> int:
    """8 or 16: the precision of ``path`` (as :func:`read_image` with ``return_bits=True`` reports it),
    read from the header only."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as e:
        raise ImageReadError(f"cannot read image {path}: {e.strerror or e}") from None
    if is_dicom(head, str(path)):
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception as e:
            raise ImageReadError(f"cannot read DICOM {path}: {type(e).__name__}: {e}") from None
        if int(getattr(ds, "SamplesPerPixel", 1) or 1) == 3:
            return 8 if int(getattr(ds, "BitsStored", 8)) <= 8 else 16
        return 8 if int(getattr(ds, "BitsStored", 16) or 16) <= 8 else 16
    try:
        with Image.open(path) as im:
            return 16 if im.mode in (*_SIXTEEN_BIT_MODES, "I", "F") else 8
    except Exception as e:
        raise ImageReadError(f"cannot decode image {path}: {type(e).__name__}: {e}") from None


# ----------------------------------------------------------------------------------------------- reducing


def reduced_shape(height: int, width: int, size: int | None) -> tuple[int, int]:
    """The ``(H, W)`` of an image reduced so its short side is ``size`` (never larger than the source)."""
    short = min(height, width)
    if size is None or short <= size:
        return height, width
    scale = size / short
    if height <= width:
        return size, max(1, round(width * scale))
    return max(1, round(height * scale)), size


def reduce_image(image: np.ndarray, size: int | None, bits: int) -> np.ndarray:
    """Reduce a float image in [0, 1] so its short side is ``size`` and quantize it for storage.

    Resizing uses Pillow's antialiased bilinear filter on float32 and keeps the aspect ratio; images whose
    short side is already ``<= size`` are not resized (never upscaled).  ``size=None`` only quantizes.
    Returns uint8 (``bits == 8``) or uint16 (``bits == 16``); :func:`to_float` converts back.
    """
    dtype = storage_dtype(bits)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {image.shape}")
    if size is not None and size < 1:
        raise ValueError(f"size must be a positive int or None, not {size!r}")
    h, w = image.shape
    nh, nw = reduced_shape(h, w, size)
    if (nh, nw) != (h, w):
        pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))
        image = np.asarray(pil.resize((nw, nh), Image.Resampling.BILINEAR), dtype=np.float32)
    maxv = float(np.iinfo(dtype).max)
    return np.clip(np.rint(image.astype(np.float32) * np.float32(maxv)), 0, maxv).astype(dtype)


_EIGHT_BIT_MODES = frozenset({"L", "RGB", "RGBA", "LA", "P", "PA", "1", "CMYK", "YCbCr"})


def _reduce_pil_8bit(data: bytes, name: str, size: int) -> np.ndarray | None:
    """Fast path of :func:`reduce_bytes` for 8-bit Pillow images: gray conversion and antialiased bilinear
    resize in uint8 (Pillow's own fixed-point rounding), with DCT-domain downscaling (``draft``) for JPEGs
    reduced by 2x or more.  ``None`` for images that need the general path (16-bit, float)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode not in _EIGHT_BIT_MODES:
                return None
            w, h = im.size
            nh, nw = reduced_shape(h, w, size)
            if im.format == "JPEG" and im.mode in ("L", "RGB") and min(h, w) >= 2 * size:
                im.draft("L", (nw, nh))
            im.load()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                try:
                    gray = im if im.mode == "L" else im.convert("L")
                except ValueError:
                    gray = im.convert("RGBA").convert("L")
            if gray.size != (nw, nh):
                gray = gray.resize((nw, nh), Image.Resampling.BILINEAR)
            return np.asarray(gray, dtype=np.uint8).copy()
    except Exception as e:
        raise ImageReadError(
            f"cannot decode image {name}: {type(e).__name__}: {e}. The file is corrupt, truncated or not a "
            "supported image; re-download or replace it"
        ) from None


def reduce_bytes(data: bytes, name: str, size: int | None) -> np.ndarray:
    """The reduced image (uint8 / uint16) of an image file's bytes: what the cache stores and what
    datasets with a ``load_size`` return (via :func:`to_float`).

    8-bit sources go through Pillow in uint8 (see :func:`reduce_image` for the size rule); JPEGs at least
    twice the target size are decoded at a reduced DCT scale first, which is much faster for full-size
    X-rays.  16-bit and DICOM sources are reduced in float32 by :func:`reduce_image`.
    """
    if size is not None and not is_dicom(data, name):
        fast = _reduce_pil_8bit(data, name, size)
        if fast is not None:
            return fast
    image, bits = decode_image_bytes(data, name)
    return reduce_image(image, size, bits)


def load_reduced(path: str | os.PathLike, size: int | None) -> np.ndarray:
    """Read ``path`` and return its reduced, quantized image (uint8 / uint16), as the cache stores it."""
    path = Path(path)
    return reduce_bytes(_read_bytes(path), str(path), size)


# ------------------------------------------------------------------ image files in a folder


def has_image_extension(path: str | os.PathLike, extensions: Collection[str] = IMAGE_EXTENSIONS) -> bool:
    """Whether ``path`` ends in one of ``extensions`` (lower case, with the dot), ignoring case."""
    return Path(path).suffix.lower() in extensions


def list_files(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """The files in ``folder`` (and its sub-folders when ``recursive``), sorted; hidden files (name starting
    with ``.``) are left out."""
    folder = Path(folder)
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in entries if not p.name.startswith(".") and p.is_file())


def find_images(
    folder: str | os.PathLike, recursive: bool = True, *, extensions: Collection[str] = IMAGE_EXTENSIONS
) -> list[Path]:
    """The image files in ``folder`` (recursively by default), sorted: the files of :func:`list_files` whose
    extension is in :data:`IMAGE_EXTENSIONS` (any case).  The one rule for which files of a folder are images,
    shared by :class:`~medcolor.data.datasets.FolderDataset` and ``medcolor predict``."""
    return [p for p in list_files(folder, recursive) if has_image_extension(p, extensions)]
