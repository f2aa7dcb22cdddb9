"""uint8 batches (issue 19): workers hand uint8 crops to the model side, which normalises the batch.

Without augmentation the normalised batch is bit-identical to the float32 per-sample path (real Kermany images,
training and evaluation crops, and a whole training run); a worker-side rotation/zoom on uint8 stays within
half a gray level of the float warp; a batch mixing uint8 and 16-bit images is normalised in the worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medcolor.data.bundle import NetworkView, build_data
from medcolor.data.transforms import EvalTransform, TrainTransform, normalize_batch


@pytest.fixture(scope="module")
def kermany(shared_path, tmp_path_factory) -> Any:
    from medcolor.config import DataConfig

    root = shared_path("data", "kermany-pneumonia-224", "train")
    cfg = DataConfig(
        dataset="folder",
        root=str(root),
        options={"patient_regex": "kermany"},
        val=0.1,
        test=None,
        size=224,
        subset=48,
        num_workers=0,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )
    return build_data(cfg)


def _batch(view: NetworkView, keys: list[Any]) -> torch.Tensor:
    batch = view.collate([view[k] for k in keys])
    x = batch["image"]
    return normalize_batch(x, *batch["normalization"]) if x.dtype == torch.uint8 else x


def test_uint8_crops_give_the_float_pixels_bit_for_bit(kermany):
    keys = [(i, 1000 + i) for i in range(24)]
    view = kermany.train_view(True, augment=False, uint8=True)
    raw = view.collate([view[k] for k in keys])
    assert raw["image"].dtype == torch.uint8 and raw["image"].shape == (24, 1, 224, 224)
    assert raw["normalization"] == (kermany.mean, kermany.std)
    ref = torch.stack([kermany.train_view(True, augment=False)[k]["image"] for k in keys])
    assert torch.equal(_batch(view, keys), ref)
    ev, ev8 = kermany.eval_view(kermany.val), kermany.eval_view(kermany.val, uint8=True)
    assert torch.equal(_batch(ev8, list(range(16))), torch.stack([ev[i]["image"] for i in range(16)]))


def test_worker_rotation_on_uint8_is_within_half_a_gray_level(kermany):
    keys = [(i, 7 + i) for i in range(24)]
    view = kermany.train_view(True, augment=True, uint8=True)
    view.transform.uint8_augment = True  # opt in: warp the uint8 crop (off by default)
    x = _batch(view, keys)
    ref = torch.stack([kermany.train_view(True, augment=True)[k]["image"] for k in keys])
    gray_levels = (x - ref).abs() * kermany.std * 255
    assert 0 < float(gray_levels.max()) <= 0.5 + 1e-3  # rounded to whole gray levels, nothing more
    view.transform.uint8_augment = False  # warped samples go the float way: the batch is the float batch
    assert torch.equal(_batch(view, keys), ref)


class _Mixed:
    """Kermany images, every other one as 16-bit (as a 16-bit PNG or DICOM would be stored)."""

    def __init__(self, dataset: Any) -> None:
        self.d, self.labels = dataset, dataset.labels

    def __len__(self) -> int:
        return len(self.d)

    def load_stored(self, i: int) -> np.ndarray:
        s = self.d.load_stored(i)
        return s.astype(np.uint16) * 257 if i % 2 else s

    def load_image(self, i: int) -> np.ndarray:
        s = self.load_stored(i)
        return s.astype(np.float32) / np.float32(255 if s.dtype == np.uint8 else 65535)


def test_a_batch_mixing_8_and_16_bit_images_is_normalised_in_the_worker(kermany):
    tf = EvalTransform(224, kermany.mean, kermany.std)
    view = NetworkView(_Mixed(kermany.train), tf, uint8=True)
    assert view[0]["image"].dtype == torch.uint8 and view[1]["image"].dtype == torch.float32
    batch = view.collate([view[i] for i in range(6)])
    assert batch["image"].dtype == torch.float32 and "normalization" not in batch
    per_sample = NetworkView(_Mixed(kermany.train), tf)  # the float path
    assert torch.equal(batch["image"], torch.stack([per_sample[i]["image"] for i in range(6)]))


def test_a_resized_image_goes_the_float_way(kermany):
    img = torch.from_numpy(kermany.train.load_stored(0))[None]
    assert TrainTransform(128, augment=None).crop_uint8(img, 0) is None
    assert EvalTransform(128).crop_uint8(img) is None
    assert TrainTransform(224, augment=None).crop_uint8(img, 0).dtype == torch.uint8
    with pytest.raises(TypeError, match="uint8"):
        normalize_batch(torch.zeros(1, 1, 4, 4), 0.5, 0.5)


def test_training_on_uint8_batches_gives_the_same_auc(tmp_path: Path, tiny_config, monkeypatch):
    """A tiny fp32 run without augmentation, seed 1: the same test AUC with float32 and with uint8 batches."""
    from medcolor.config import StageConfig
    from medcolor.training import train
    from medcolor.training.data import TrainData

    seen: list[torch.dtype] = []
    original = TrainData.train_dataloader

    def spy(self: TrainData) -> Any:
        loader = original(self)
        seen.append(next(iter(loader))["image"].dtype)
        return loader

    monkeypatch.setattr(TrainData, "train_dataloader", spy)
    aucs = {}
    for uint8 in (False, True):
        monkeypatch.setattr(TrainData, "uint8", uint8)
        cfg = tiny_config(
            tmp_path / f"run-{uint8}",
            tmp_path / "data",
            stages=[StageConfig("all", lr=0.05, iterations=4, val_every=2)],
            bootstrap=0,
        )
        cfg.data.augment = False
        cfg.trainer.seed = 1
        aucs[uint8] = train(cfg).test["mean_auc"]
    assert seen[0] == torch.float32 and seen[-1] == torch.uint8
    assert abs(aucs[True] - aucs[False]) <= 1e-6, aucs
