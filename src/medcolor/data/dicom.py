"""DICOM files -> one float32 gray channel in [0, 1] (used by :func:`medcolor.data.readers.read_image`).

The modality LUT (rescale slope/intercept) first, then the VOI transform: the first window (centre/width,
with the DICOM LINEAR / LINEAR_EXACT / SIGMOID functions) maps straight to [0, 1]; a VOI LUT sequence is
applied with pydicom and scaled by the LUT's own value range.  Without any VOI the value range of the stored
bits (``BitsStored``, ``PixelRepresentation``, after rescale) maps to [0, 1].  MONOCHROME1 is inverted last.
Colour DICOMs use ITU-R 601-2 luminance weights.  Tags that would make a silently wrong image (RescaleSlope
0, non-finite rescale or window values, a PhotometricInterpretation other than MONOCHROME1/2 for one sample
per pixel) raise :class:`~medcolor.errors.ImageReadError` naming the file, like every other failure.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from medcolor.errors import ImageReadError

__all__ = ["DICOM_EXTENSIONS", "decode_dicom", "is_dicom"]

DICOM_EXTENSIONS = frozenset({".dcm", ".dicom", ".dic"})


def is_dicom(data: bytes, name: str) -> bool:
    """DICOM by its ``DICM`` preamble, or by the extension of ``name`` for files without one."""
    return data[128:132] == b"DICM" or Path(name).suffix.lower() in DICOM_EXTENSIONS


def _first(value: object) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = next(iter(value))  # type: ignore[call-overload]
    return float(value)  # type: ignore[arg-type]


def _window(arr: np.ndarray, center: float, width: float, function: str, name: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing straight to [0, 1]."""
    function = function.upper()
    if not (np.isfinite(center) and np.isfinite(width)):
        raise ImageReadError(f"cannot read DICOM {name}: WindowCenter {center} / WindowWidth {width} is not finite")
    if function == "LINEAR":
        if width < 1:
            raise ImageReadError(f"cannot read DICOM {name}: WindowWidth {width} < 1 for a LINEAR window")
        if width == 1:
            return (arr > center - 0.5).astype(np.float64)
        return np.clip((arr - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    if width <= 0:
        raise ImageReadError(f"cannot read DICOM {name}: WindowWidth {width} <= 0")
    if function == "LINEAR_EXACT":
        return np.clip((arr - center) / width + 0.5, 0.0, 1.0)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (arr - center) / width))
    raise ImageReadError(f"cannot read DICOM {name}: unknown VOILUTFunction {function!r}")


def _stored_range(ds: object) -> tuple[float, float]:
    bits = int(getattr(ds, "BitsStored", 0) or getattr(ds, "BitsAllocated", 16))
    if int(getattr(ds, "PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope = getattr(ds, "RescaleSlope", None)
    intercept = getattr(ds, "RescaleIntercept", None)
    if slope is not None or intercept is not None:
        s = float(slope if slope is not None else 1.0)
        b = float(intercept if intercept is not None else 0.0)
        lo, hi = sorted((lo * s + b, hi * s + b))
    return lo, hi


def _check_rescale(ds: object, name: str) -> None:
    """RescaleSlope 0 (every pixel the same value) or a non-finite slope / intercept is an error, not a
    silently constant image."""
    for tag, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        value = getattr(ds, tag, None)
        if value is None or value == "":
            continue
        try:
            v = _first(value)
        except (TypeError, ValueError):
            raise ImageReadError(f"cannot read DICOM {name}: {tag} {value!r} is not a number") from None
        if not np.isfinite(v) or (tag == "RescaleSlope" and v == 0):
            raise ImageReadError(
                f"cannot read DICOM {name}: {tag} is {value!r}, which maps every pixel to the same (or no) value; "
                f"fix the tag (usually {default:g})"
            )


def decode_dicom(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """The bytes of a DICOM file -> ``(float32 (H, W) in [0, 1], bits)``; any failure is an
    :class:`ImageReadError` naming ``name`` (pydicom raises many kinds of exceptions on malformed tags)."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as e:
        raise ImageReadError(f"cannot read DICOM {name}: {type(e).__name__}: {e}") from None
    try:
        return _decode(ds, name)
    except ImageReadError:
        raise
    except Exception as e:
        raise ImageReadError(f"cannot read DICOM {name}: {type(e).__name__}: {e}") from None


def _decode(ds: Any, name: str) -> tuple[np.ndarray, int]:
    pixels = _pixel_array(ds, name)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    stored_bits = _stored_bits(ds, name)
    if samples == 3:  # pydicom converts YBR to RGB
        return _colour_to_gray(pixels, stored_bits, name)
    if pixels.ndim != 2:
        raise ImageReadError(f"cannot read DICOM {name}: unexpected pixel array shape {pixels.shape}")
    photometric = _photometric(ds, name)
    if "ModalityLUTSequence" not in ds:
        _check_rescale(ds, name)
    try:
        image = _apply_luts(pixels, ds, name)
    except ImageReadError:
        raise
    except Exception as e:
        raise ImageReadError(f"cannot apply the LUTs of DICOM {name}: {type(e).__name__}: {e}") from None
    image = np.clip(image, 0.0, 1.0)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
    return image.astype(np.float32), (8 if stored_bits <= 8 else 16)


def _stored_bits(ds: Any, name: str) -> int:
    """The bits per stored sample of a single-frame image (1..32), or an error."""
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    stored_bits = int(getattr(ds, "BitsStored", 0) or getattr(ds, "BitsAllocated", 16) or 16)
    if frames > 1:
        raise ImageReadError(f"cannot read DICOM {name}: it has {frames} frames; only single images are supported")
    if not 1 <= stored_bits <= 32:
        raise ImageReadError(f"cannot read DICOM {name}: BitsStored {stored_bits} is not in 1..32")
    return stored_bits


def _photometric(ds: Any, name: str) -> str:
    """MONOCHROME1 or MONOCHROME2 (the default), or an error for other one-sample interpretations."""
    photometric = str(getattr(ds, "PhotometricInterpretation", None) or "MONOCHROME2").strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(
            f"cannot read DICOM {name}: PhotometricInterpretation {photometric!r} with one sample per pixel is "
            "not supported (MONOCHROME1 or MONOCHROME2 expected); convert the file to a grayscale image"
        )
    return photometric


def _pixel_array(ds: Any, name: str) -> np.ndarray:
    """The stored pixels, or an error that says which decoder a compressed transfer syntax needs."""
    if "PixelData" not in ds:
        raise ImageReadError(f"cannot read DICOM {name}: it holds no pixel data (PixelData element missing)")
    try:
        return ds.pixel_array
    except Exception as e:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        hint = ""
        if syntax is not None and getattr(syntax, "is_compressed", False):
            hint = f" The pixel data is compressed ({syntax.name}); install pylibjpeg / gdcm to decode it."
        raise ImageReadError(f"cannot decode the pixels of DICOM {name}: {type(e).__name__}: {e}.{hint}") from None


def _colour_to_gray(pixels: np.ndarray, stored_bits: int, name: str) -> tuple[np.ndarray, int]:
    """An RGB DICOM image as luma (ITU-R 601 weights) in [0, 1]."""
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ImageReadError(f"cannot read DICOM {name}: unexpected colour pixel array shape {pixels.shape}")
    rgb = pixels.astype(np.float64)
    maxv = float(2**stored_bits - 1)
    gray = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114) / maxv
    return np.clip(gray, 0, 1).astype(np.float32), (8 if maxv <= 255 else 16)


def _apply_luts(pixels: np.ndarray, ds: Any, name: str) -> np.ndarray:
    """The modality LUT (or rescale), then the VOI LUT or window when the file has one, else the stored range,
    mapped onto [0, 1] (not yet clipped)."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    arr = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        out = np.asarray(apply_voi(arr, ds, index=0), dtype=np.float64)
        table = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
        lo, hi = float(table.min()), float(table.max())
        if not hi > lo:
            raise ImageReadError(f"cannot read DICOM {name}: its VOI LUT maps every pixel to {lo:g}")
        return (out - lo) / (hi - lo)
    if "WindowCenter" in ds and "WindowWidth" in ds and ds.WindowWidth is not None:
        function = str(getattr(ds, "VOILUTFunction", "LINEAR") or "LINEAR")
        return _window(arr, _first(ds.WindowCenter), _first(ds.WindowWidth), function, name)
    if "ModalityLUTSequence" in ds:
        lo, hi = float(arr.min()), float(arr.max())
    else:
        lo, hi = _stored_range(ds)
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
