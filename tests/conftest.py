from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
#: The shared real data and weights (never copied into the repo): $MEDCOLOR_SHARED, else <repo>/../shared.
SHARED = Path(os.environ.get("MEDCOLOR_SHARED") or REPO.parent / "shared").expanduser().resolve()

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} is not available (the shared data/weights folder: set MEDCOLOR_SHARED, or put it next to "
            "the repo as ../shared)"
        )
    return path


@pytest.fixture(scope="session")
def shared_path() -> Callable[..., Path]:
    """``shared_path("data", "labels", "mura")``: a path under the shared folder ($MEDCOLOR_SHARED, default
    <repo>/../shared), or skip the test with the reason when it is absent.  The one way tests find real data."""
    return _shared


@pytest.fixture(scope="session")
def mobilenet_weights(shared_path: Callable[..., Path]) -> Path:
    return shared_path("weights", "mobilenet_v2-imagenet-features.pth")


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


def _tiny_config(
    out: Path,
    data_dir: Path,
    *,
    colorizer: str = "colorU",
    stages: list | None = None,
    subset: float | None = None,
    bootstrap: int = 50,
    **over,
):
    """Synthetic 32 px images, random-init MobileNetV2, ``colorizer`` (colorU): a few seconds per stage.
    ``stages`` default: one 4-iteration color-module stage; ``over``: RunConfig attributes to replace."""
    from medcolor.config import DataConfig, ModelConfig, RunConfig, StageConfig, TrainerConfig

    cfg = RunConfig(
        data=DataConfig(
            dataset="synthetic",
            root=str(data_dir),
            size=32,
            batch_size=8,
            num_workers=0,
            val=0.2,
            test=0.2,
            options={"n": 120, "image_size": 40},
            subset=subset,
        ),
        model=ModelConfig(colorizer=colorizer, backbone="mobilenet_v2", weights="none"),
        stages=stages if stages is not None else [StageConfig("color-module", lr=0.05, iterations=4, val_every=2)],
        trainer=TrainerConfig(progress=False, bootstrap=bootstrap, precision="32-true"),
        output=str(out),
    )
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., object]:
    """``tiny_config(out, data_dir, **options)``: the small synthetic run configuration the training,
    resume, divergence and report tests train (see :func:`_tiny_config`)."""
    return _tiny_config
