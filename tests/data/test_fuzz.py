"""Property-based tests (hypothesis) over the readers and the label files.

Each input either loads correctly or raises a medcolor error (ImageReadError / DataError) whose message names
the file (and the row, for label files): never another exception type, never a silently wrong result (NaN
pixels, a constant image from a broken tag, a truncated file read as a different image, an escaping path or
a conflicting duplicate accepted, a row dropped without a trace).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from medcolor.data import CsvDataset
from medcolor.data.readers import load_reduced, read_image
from medcolor.errors import DataError, ImageReadError, MedcolorError

pytestmark = [
    pytest.mark.filterwarnings("ignore:Invalid value for VR"),  # pydicom, reading the odd tags written here
    pytest.mark.filterwarnings("ignore:Corrupt EXIF data"),  # Pillow, reading corrupted TIFFs
]
FUZZ = settings(
    max_examples=int(os.environ.get("MEDCOLOR_FUZZ_EXAMPLES", "30")),  # raise it for a deeper run
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PNG_SIG = b"\x89PNG\r\n\x1a\n"
MAGIC = [b"", PNG_SIG, b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"BM", b"GIF89a", b"\x00" * 128 + b"DICM"]
EXTENSIONS = [".png", ".jpg", ".tif", ".dcm", ".bmp", ""]


def _read(path: Path) -> np.ndarray | None:
    """The image, checked for what every reader promises, or None after a clean ImageReadError naming it."""
    try:
        image = read_image(path)
    except ImageReadError as e:
        event("ImageReadError")
        assert str(path) in str(e), f"the message does not name the file: {e}"
        with pytest.raises(ImageReadError):  # the reduced path (load_size, cache) agrees
            load_reduced(path, 4)
        return None
    event("read")
    assert isinstance(image, np.ndarray) and image.dtype == np.float32 and image.ndim == 2
    assert min(image.shape) >= 1 and np.isfinite(image).all()
    assert image.min() >= 0.0 and image.max() <= 1.0
    reduced = load_reduced(path, 4)
    assert reduced.dtype in (np.uint8, np.uint16) and reduced.ndim == 2 and min(reduced.shape) <= max(4, 1)
    return image


def _write(tmp: str, name: str, data: bytes) -> Path:
    path = Path(tmp) / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------ random bytes


@FUZZ
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=600), ext=st.sampled_from(EXTENSIONS))
def test_random_bytes(magic: bytes, body: bytes, ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _read(_write(tmp, f"x{ext}", magic + body))


# ------------------------------------------------------------------------------------------ truncated files


def _encoded(kind: str) -> tuple[bytes, str]:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    if kind == "png16":
        Image.fromarray(rng.integers(0, 65535, (12, 9)).astype(np.uint16)).save(buf, format="PNG")
        return buf.getvalue(), ".png"
    if kind == "tiff-float":
        Image.fromarray(rng.random((12, 9)).astype(np.float32)).save(buf, format="TIFF")
        return buf.getvalue(), ".tif"
    if kind == "dicom":
        return _dicom_bytes(rng.integers(0, 4096, (12, 9)).astype(np.uint16)), ".dcm"
    fmt = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP"}[kind]
    Image.fromarray(rng.integers(0, 255, (12, 9)).astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue(), {"png": ".png", "jpeg": ".jpg", "bmp": ".bmp"}[kind]


KINDS = ("bmp", "dicom", "jpeg", "png", "png16", "tiff-float")


@functools.cache
def encoded(kind: str) -> tuple[bytes, str]:
    return _encoded(kind)


@FUZZ
@given(kind=st.sampled_from(KINDS), cut=st.floats(0.0, 1.0))
def test_truncated_files_fail_or_read_exactly_as_the_whole_file(kind: str, cut: float) -> None:
    data, ext = encoded(kind)
    with tempfile.TemporaryDirectory() as tmp:
        whole = _read(_write(tmp, f"whole{ext}", data))
        assert whole is not None
        part = _read(_write(tmp, f"cut{ext}", data[: int(cut * len(data))]))
        if part is not None:  # only bytes after the image data were cut
            assert np.array_equal(part, whole), f"{kind} cut at {int(cut * len(data))} of {len(data)} read differently"


@FUZZ
@given(kind=st.sampled_from(KINDS), at=st.floats(0.0, 1.0), byte=st.integers(0, 255))
def test_corrupted_byte(kind: str, at: float, byte: int) -> None:
    data, ext = encoded(kind)
    k = min(int(at * len(data)), len(data) - 1)
    with tempfile.TemporaryDirectory() as tmp:
        _read(_write(tmp, f"flip{ext}", data[:k] + bytes([byte]) + data[k + 1 :]))


# ------------------------------------------------------------------------------------------ float images


@FUZZ
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.floats(width=32)))
def test_float_images_nan_inf_and_range(arr: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.tif"
        Image.fromarray(arr).save(path)
        image = _read(path)
    if not np.isfinite(arr).all():
        assert image is None, "NaN / inf pixels must not be read"
        return
    assert image is not None and image.shape == arr.shape
    if arr.min() >= 0 and arr.max() <= 1:
        assert np.array_equal(image, arr)
    elif arr.max() > arr.min():
        assert image.min() == 0.0 and image.max() == 1.0


# ------------------------------------------------------------------------------------------ DICOM tags


def _dicom_bytes(pixels: np.ndarray | None, **tags: object) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = (12, 9) if pixels is None else pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in tags.items():
        if value is not None:
            setattr(ds, key, value)
    if pixels is not None:
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the odd values it is asked to write
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _mostly(benign: object, odd: st.SearchStrategy) -> st.SearchStrategy:
    """``benign`` three times in four, so that several odd tags rarely meet and both outcomes are common."""
    return st.one_of(st.just(benign), st.just(benign), st.just(benign), odd)


ODD_NUMBERS = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 1e-9, 1e30, math.nan, math.inf, -math.inf]), st.floats(-1e4, 1e4)
)
PHOTOMETRIC = ["MONOCHROME1", "RGB", "PALETTE COLOR", "YBR_FULL", "FOO", None]


def _ds(value: float | None) -> str | None:
    """A DICOM decimal string (at most 16 characters): 9 significant digits fit any exponent
    (``-4.33836232e-189``); cutting ``repr`` at 16 left unparseable text such as ``4.3383623242878e``."""
    return None if value is None else f"{value:.9g}"


@FUZZ
@given(
    slope=_mostly(None, ODD_NUMBERS),
    intercept=_mostly(None, ODD_NUMBERS),
    center=_mostly(None, ODD_NUMBERS),
    width=_mostly(None, ODD_NUMBERS),
    function=_mostly(None, st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID", "BOGUS"])),
    photometric=_mostly("MONOCHROME2", st.sampled_from(PHOTOMETRIC)),
    bits=st.integers(1, 16),
    signed=st.booleans(),
    samples=_mostly(1, st.sampled_from([0, 2, 3, 4])),
    pixel_data=_mostly(True, st.just(False)),
    seed=st.integers(0, 2**16),
)
def test_odd_dicom_tags(
    slope, intercept, center, width, function, photometric, bits, signed, samples, pixel_data, seed
):
    pixels = np.random.default_rng(seed).integers(0, 2**bits, (12, 9)).astype(np.uint16)
    tags = {
        "RescaleSlope": _ds(slope),
        "RescaleIntercept": _ds(intercept),
        "WindowCenter": _ds(center),
        "WindowWidth": _ds(width),
        "VOILUTFunction": function,
        "PhotometricInterpretation": photometric,
        "BitsStored": bits,
        "HighBit": bits - 1,
        "PixelRepresentation": int(signed),
        "SamplesPerPixel": samples,
    }
    data = _dicom_bytes(pixels if pixel_data else None, **tags)
    with tempfile.TemporaryDirectory() as tmp:
        image = _read(_write(tmp, "odd.dcm", data))
    if image is None:
        return
    # what must never load: no pixels, a slope of 0 or a non-finite rescale, a colour interpretation of one sample
    assert pixel_data and samples == 1
    assert photometric in ("MONOCHROME1", "MONOCHROME2", None)
    assert slope is None or (math.isfinite(slope) and float(_ds(slope)) != 0)
    assert intercept is None or math.isfinite(intercept)
    assert image.shape == (12, 9)


# ------------------------------------------------------------------------------------------ label files


IMAGES = ("a.png", "b.png", "sub/c.png")
PATHS = st.one_of(
    st.sampled_from(
        [*IMAGES, "./a.png", "sub/../b.png", "missing.png", "../a.png", "../../etc/passwd", "/etc/hostname"]
    ),
    st.sampled_from(["ROOT/a.png", "ROOT/../a.png"]),  # absolute, inside / outside root
    st.text(min_size=1, max_size=12),
)
VALID_CELLS = st.sampled_from(["1", "0", "-1", "", "1.0", "-1.0", " 0 ", "nan"])
CELLS = st.one_of(VALID_CELLS, VALID_CELLS, VALID_CELLS, st.sampled_from(["yes", "2", "0.5"]), st.text(max_size=6))


def _expected_label(cell: str) -> float | None:
    """The raw label a cell must give (NaN for blank), or None when it is not a valid label."""
    text = cell.strip()
    if text == "" or text.lower() in ("nan", "n/a", "na", "null", "none", "#n/a", "<na>"):
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value in (1.0, 0.0, -1.0) else None


def _inside(root: Path, rel: str) -> bool:
    path = os.path.normpath(os.path.join(root, rel))
    return path.startswith(str(root) + os.sep) and "\0" not in rel


@pytest.fixture(scope="module")
def image_root(tmp_path_factory, gray_png) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "images"
    for name in IMAGES:
        gray_png(root / name)
    gray_png(root.parent / "a.png")  # exists, outside root
    return root.resolve()


POLICIES = {
    "on_missing": st.sampled_from(["error", "skip", "present"]),
    "on_duplicate": st.sampled_from(["error", "drop"]),
}


@FUZZ
@given(rows=st.lists(st.tuples(PATHS, VALID_CELLS, VALID_CELLS), max_size=5), **POLICIES)
def test_label_file_paths(image_root: Path, rows, on_missing: str, on_duplicate: str) -> None:
    """Escaping, absolute, missing, repeated and conflicting paths."""
    _check_label_file(image_root, rows, on_missing, on_duplicate)


@FUZZ
@given(
    rows=st.lists(st.tuples(st.sampled_from(IMAGES), CELLS, CELLS), max_size=4, unique_by=lambda r: r[0]),
    **POLICIES,
)
def test_label_file_cells(image_root: Path, rows, on_missing: str, on_duplicate: str) -> None:
    """Random label cells: each a valid raw label (1 / 0 / -1 / blank) read as such, or a DataError naming its row."""
    _check_label_file(image_root, rows, on_missing, on_duplicate)


def _check_label_file(image_root: Path, rows, on_missing: str, on_duplicate: str) -> None:
    rows = [(p.replace("ROOT", str(image_root)), y, z) for p, y, z in rows]
    assume(all("\n" not in p and "\r" not in p for p, _, _ in rows))  # keep one line per row for the oracle
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", "y", "z"])
            w.writerows(rows)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = CsvDataset(
                    image_root, path, label_columns=["y", "z"], on_missing=on_missing, on_duplicate=on_duplicate
                )
        except MedcolorError as e:
            event(f"DataError: {str(e).split(str(path))[-1][:30]}")
            assert isinstance(e, DataError) and str(path) in str(e), f"{type(e).__name__}: {e}"
            return
    event("loaded")
    assert rows, "a file without rows must not load"
    # nothing was silently wrong: every row either kept with its labels or listed in skipped with a reason
    assert len(ds) + len(ds.skipped) == len(rows)
    assert all(_inside(image_root, p.strip()) for p, _, _ in rows), "a path leaving root was accepted"
    assert len({str(p) for p in ds.paths}) == len(ds), "an image is listed twice"
    assert all(p.is_file() and str(p).startswith(str(image_root) + os.sep) for p in ds.paths)
    for k, source_row in enumerate(ds.meta["source_row"].tolist()):
        _, y, z = rows[source_row - 2]
        for j, cell in enumerate((y, z)):
            want = _expected_label(cell)
            assert want is not None, f"row {source_row}: {cell!r} accepted as a label"
            got = float(ds.raw_labels[k, j])
            assert (math.isnan(want) and math.isnan(got)) or got == want


@FUZZ
@given(
    header=st.lists(
        st.one_of(st.sampled_from(["path", "y", "Path", "y "]), st.text(max_size=5)), min_size=1, max_size=4
    ),
    cells=st.lists(st.lists(CELLS, min_size=1, max_size=4), min_size=0, max_size=4),
)
def test_random_columns(image_root: Path, header: list[str], cells: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(cells)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = CsvDataset(image_root, path, label_columns=["y"])
        except MedcolorError as e:
            assert isinstance(e, DataError) and str(path) in str(e), f"{type(e).__name__}: {e}"
            return
    assert "path" in header and "y" in header and 0 < len(ds) <= len(cells)
