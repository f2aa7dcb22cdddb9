from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDCOLOR_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2-imagenet-features.pth"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def need(path: Path) -> Path:
    """Skip (with the reason) when a file from ../shared is absent."""
    if not path.exists():
        pytest.skip(f"{path} is not available (the shared data/weights folder lives next to the repo)")
    return path


@pytest.fixture
def mobilenet_weights() -> Path:
    return need(MOBILENET_WEIGHTS)


@pytest.fixture
def write_dicom() -> Callable[..., Path]:
    """Write a small uncompressed single-frame DICOM file; returns its path."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    def write(
        path: Path,
        pixels: np.ndarray,
        *,
        photometric: str = "MONOCHROME2",
        bits_stored: int = 12,
        signed: bool = False,
        slope: float | None = None,
        intercept: float | None = None,
        center: float | None = None,
        width: float | None = None,
        voi_function: str | None = None,
    ) -> Path:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "DX"
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16 if bits_stored > 8 else 8
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = int(signed)
        if slope is not None:
            ds.RescaleSlope = slope
            ds.RescaleIntercept = intercept if intercept is not None else 0.0
        if center is not None:
            ds.WindowCenter = center
            ds.WindowWidth = width
        if voi_function is not None:
            ds.VOILUTFunction = voi_function
        dtype = (np.int16 if signed else np.uint16) if bits_stored > 8 else np.uint8
        ds.PixelData = pixels.astype(dtype).tobytes()
        ds.save_as(path, enforce_file_format=True)
        return path

    return write
