"""End-to-end throughput (issue 9): medcolor's training and predict paths against the model-only bound and a
plain torchvision pipeline, all measured in ONE process on the same images, model and batch size.

    PYTHONPATH=src python benchmarks/throughput.py [--quick] [--device auto|cpu|cuda] [--batch-size 16]
        [--size 320] [--models pixelshuffle+resnet18,colorU+densenet121,colorU+mobilenet_v2]
        [--datasets covid,kermany] [--steps N] [--warmup N] [--rounds N]

Variants (images/s, after warm-up):

* train bound     — forward + backward + SGD step of C(E(T(x))) on batches already in memory, in medcolor's
                    own precision / memory format (``resolve_precision`` / ``resolve_channels_last``);
* train medcolor  — ``medcolor.training.train(cfg)`` as a user runs it (its DataLoader, workers, cache if
                    configured, augmentation where medcolor puts it, the Lightning loop), timed by a Lightning
                    callback between consecutive ``on_train_batch_end`` calls;
* train naive     — torchvision ``Dataset`` opening every file with PIL, per-sample ``transforms.v2`` (random
                    square crop + resize, rotation +-10 deg and zoom 0-10 % each with p=0.75), default
                    ``DataLoader``, fp32 NCHW, a plain PyTorch loop;
* pipeline        — medcolor's training DataLoader (+ batched augmentation where medcolor runs it on the
                    device) without a model: what it could feed an accelerator; also with a built image cache;
* infer bound     — model forward (eval, no grad) on in-memory batches in medcolor's precision / format;
* predict         — ``medcolor.inference.predict_files`` on a folder of files with ``medcolor predict``'s
                    defaults (precision auto, the same as training), timed over the whole call (model
                    load, decoding); also with ``--precision 32-true`` against the fp32 bound;
* predict naive   — PIL + ``transforms.v2`` resize/centre-crop per file, batches of the same size, fp32 loop.

Images: the COVID-19 collection (648 files, mixed JPEG/PNG up to 1024 px) is reduced once to a temporary folder of
PNGs whose short side is ``--size`` (aspect kept, so the random square crop still crops; gray stays gray, every
other mode becomes RGB) under ``$TMPDIR/medcolor-bench-covid<size>`` and reused by later runs; medcolor reads it
with ``load_size=size``, so neither pipeline pays for decoding 1024 px files and both read the same bytes.
Kermany is already 224 px (JPEG) and is read in place.

The machine is shared, so variants are measured in ``--rounds`` interleaved rounds and ratios are taken within a
round (median over rounds); the 1/5/15-min load average is recorded for every round.  Results go to
``benchmarks/results/<machine>.json`` and ``.md``.  ``--quick`` (one model, COVID only, 1 round, 2 timed
steps) takes about 2-3 minutes on the 2-core CPU when it is idle.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import logging
import os
import platform
import re
import shutil
import statistics
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from medcolor.model import ColorTransferNet
from medcolor.normalization import CHEXPERT_MEAN, CHEXPERT_STD

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
if not (SHARED / "data").is_dir():  # a git worktree next to the main checkout
    SHARED = Path("/work/shared")
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2-imagenet-features.pth"
ALL_MODELS = ["pixelshuffle+resnet18", "colorU+densenet121", "colorU+mobilenet_v2"]
LR = 0.01


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# =============================================================================================== medcolor calls
# Every call into medcolor's training package is in this section, and all of them are public names of
# ``medcolor.training`` (train(callbacks=...), resolve_runtime, resolve_stage, TrainData).  Everything else uses
# only medcolor's stable modules (model, data.transforms, io, inference).


def medcolor_resolved(device: str) -> tuple[str, str, bool]:
    """(accelerator, precision, channels_last) exactly as a run with ``accelerator/precision/channels_last: auto``."""
    from medcolor.training import resolve_accelerator, resolve_channels_last, resolve_precision

    acc = resolve_accelerator("auto" if device == "auto" else device)
    return acc, resolve_precision("auto", acc), resolve_channels_last("auto")


def medcolor_run_config(
    data: dict[str, Any],
    model: str,
    *,
    batch: int,
    iterations: int,
    strategy: str,
    out: Path,
    device: str = "auto",
    trainer: dict[str, Any] | None = None,
):
    from medcolor.config import RunConfig

    colorizer, backbone = model.split("+")
    weights = str(MOBILENET_WEIGHTS) if backbone == "mobilenet_v2" and MOBILENET_WEIGHTS.is_file() else "none"
    return RunConfig.from_dict(
        {
            "data": {**data, "batch_size": batch},
            "model": {"colorizer": colorizer, "backbone": backbone, "weights": weights},
            # one chunk (no validation inside the timed steps)
            "stages": [{"strategy": strategy, "lr": LR, "iterations": iterations, "val_every": iterations}],
            "trainer": {"progress": False, "seed": 0, "accelerator": device, **(trainer or {})},
            "output": str(out),
        }
    )


class _Finished(Exception):
    """Raised by the timing callback once the timed steps are done (skips validation/checkpoints)."""


def medcolor_fit(cfg: Any, *callbacks: Any) -> None:
    """Run ``medcolor.training.train(cfg)`` with ``callbacks`` (Lightning callbacks) added to its Trainer,
    without the test-set evaluation; a callback ends it early by raising :class:`_Finished`.

    Global torch flags that Lightning sets for medcolor's ``deterministic: warn`` are restored afterwards so
    the other variants of this process run with torch's defaults."""
    from medcolor.training import train

    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    try:
        train(cfg, overwrite=True, evaluate_test=False, callbacks=list(callbacks))
    except _Finished:
        pass
    finally:
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[2], flags[3]
        torch.utils.deterministic.fill_uninitialized_memory = flags[4]


def medcolor_bundle(cfg: Any) -> Any:
    from medcolor.data.bundle import build_data

    return build_data(cfg.data)


def medcolor_train_loader(
    cfg: Any, bundle: Any, iterations: int, device: str, uint8: bool = True
) -> tuple[DataLoader, Any]:
    """The training DataLoader a run builds for ``cfg``'s first stage (``TrainData`` of its ``StagePlan``:
    worker-side rotation/zoom unless it runs batched on the device) and the device-side augmentation callable
    ``f(images, seeds)`` or None (what ``ColorTransferModule`` applies to each batch)."""
    from medcolor.data.transforms import AugmentConfig, BatchRotateZoom
    from medcolor.training import TrainData, resolve_runtime, resolve_stage

    cfg.trainer.accelerator = "cuda" if device == "cuda" else "cpu"
    runtime = resolve_runtime(cfg)
    plan = resolve_stage(
        0, cfg.stages[0], cfg, runtime=runtime, n_train=len(bundle.train), world_size=1, directory=Path(cfg.output)
    )
    dm = TrainData(bundle, plan, iterations=iterations, seed=plan.seed)
    dm.uint8 = uint8  # False: the float32 batches of before the uint8 pipeline (normalised in the workers)
    device_aug = BatchRotateZoom(AugmentConfig()) if runtime.augment_on_device and plan.augment else None
    return dm.train_dataloader(), device_aug


# =============================================================================================== data sets


def prepare_covid(size: int) -> Path:
    """The COVID-19 collection with every image's short side reduced to ``size`` (PNG), once per machine."""
    src = SHARED / "data" / "covid-chestxray"
    out = Path(tempfile.gettempdir()) / f"medcolor-bench-covid{size}"
    done = out / "DONE"
    if done.is_file():
        return out
    import pandas as pd

    log(f"preparing {out} (COVID-19 collection, short side {size} px, PNG) ...")
    (out / "images").mkdir(parents=True, exist_ok=True)
    meta = pd.read_csv(src / "metadata.csv", usecols=["patientid", "finding", "view", "filename"])
    names = {}
    for name in sorted(set(meta["filename"])):
        with Image.open(src / "images" / name) as im:
            im = im.convert("L") if im.mode == "L" else im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            if s < 1:
                im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BILINEAR)
            new = Path(name).stem + ".png"
            im.save(out / "images" / new)
            names[name] = new
    meta["filename"] = meta["filename"].map(names)
    meta.to_csv(out / "metadata.csv", index=False)
    done.write_text("ok\n")
    return out


def dataset_config(name: str, size: int) -> tuple[dict[str, Any], int]:
    """medcolor ``data:`` section and input size of a benchmark data set."""
    if name == "covid":
        root = prepare_covid(size)
        return {
            "dataset": "csv",
            "root": str(root / "images"),
            "csv": str(root / "metadata.csv"),
            "options": {
                "path_column": "filename",
                "category_column": "finding",
                "positive": ["COVID-19"],
                "separator": ",",
                "ignore": ["todo"],
                "patient_column": "patientid",
                "on_duplicate": "drop",  # the collection lists 5 images twice
            },
            "val": 0.1,
            "test": None,
            "size": size,
        }, size
    if name.startswith("synthetic"):  # "synthetic" or "synthetic:N": medcolor's generated set, where no data is
        n = int(name.partition(":")[2] or 600)
        return {
            "dataset": "synthetic",
            "root": str(Path(tempfile.gettempdir()) / f"medcolor-bench-synthetic{size}-{n}"),
            "options": {"n": n, "image_size": size},
            "val": 0.1,
            "test": None,
            "size": size,
        }, size
    if name == "kermany":
        return {
            "dataset": "folder",
            "root": str(SHARED / "data" / "kermany-pneumonia-224" / "train"),
            "options": {"patient_regex": "kermany"},
            "val": 0.05,
            "test": None,
            "size": 224,
        }, 224
    raise SystemExit(f"unknown data set {name!r} (covid, kermany)")


class RandomSquareCrop(torch.nn.Module):
    """A random square of side min(H, W) (the paper's crop of non-square images), for v2.Compose."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        s = min(h, w)
        top = int(torch.randint(0, h - s + 1, ()))
        left = int(torch.randint(0, w - s + 1, ()))
        return v2.functional.crop(img, top, left, s, s)


class NaiveFiles(Dataset):
    """What a user would write: PIL every epoch, per-sample torchvision transforms v2."""

    def __init__(self, paths: list[str], labels: np.ndarray | None, size: int, train: bool) -> None:
        self.paths, self.labels = paths, labels
        norm = [v2.ToDtype(torch.float32, scale=True), v2.Normalize([CHEXPERT_MEAN], [CHEXPERT_STD])]
        if train:
            self.transform = v2.Compose(
                [
                    v2.ToImage(),
                    RandomSquareCrop(),
                    v2.Resize((size, size), antialias=True),
                    v2.RandomApply([v2.RandomRotation(10)], p=0.75),
                    v2.RandomApply([v2.RandomAffine(degrees=0, scale=(1.0, 1.1))], p=0.75),
                    *norm,
                ]
            )
        else:
            self.transform = v2.Compose([v2.ToImage(), v2.Resize(size, antialias=True), v2.CenterCrop(size), *norm])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as im:
            x = self.transform(im.convert("L"))
        if self.labels is None:
            return x
        return x, torch.as_tensor(self.labels[i], dtype=torch.float32)


# =============================================================================================== measuring


class PeakMemory:
    """Peak memory during a block, in MB. CUDA: ``torch.cuda.max_memory_allocated``. CPU: the main process's
    peak RSS (VmHWM, reset through /proc/self/clear_refs; freed heap is returned with malloc_trim first) plus
    the largest sum of its child processes' (DataLoader workers') private memory, sampled every 0.25 s."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.mb: float | None = None

    @staticmethod
    def _status(pid: int | str, key: str) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    @staticmethod
    def _private(pid: str) -> int:
        """kB only this process maps (a forked worker's own pages, not the copy-on-write ones it shares)."""
        total = 0
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
        return total

    @staticmethod
    def _children() -> list[str]:
        out: list[str] = []
        with contextlib.suppress(OSError):
            for task in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{task}/children") as f:
                    out += f.read().split()
        return out

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            kids = sum(self._private(p) for p in self._children())
            self._kids = max(self._kids, kids)
            self._main = max(self._main, self._status("self", "VmRSS"))

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            return self
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.start_mb = self._status("self", "VmRSS") / 1024
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._hwm = True
        except OSError:
            self._hwm = False
        self._kids, self._main = 0, self._status("self", "VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device == "cuda":
            self.mb = torch.cuda.max_memory_allocated() / 2**20
            return
        self._stop.set()
        self._thread.join()
        main = self._status("self", "VmHWM") if self._hwm else self._main
        self.mb = (max(main, self._main) + self._kids) / 1024


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) used so far by this process and by its live child processes (workers)."""
    me = os.times()
    kids = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in PeakMemory._children():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            kids += (int(fields[11]) + int(fields[12])) / tick
    return me.user + me.system, kids


def cpu_extra(c0: tuple[float, float], c1: tuple[float, float], images: int) -> dict[str, float]:
    """CPU time per image of the main process and of the workers between two :func:`cpu_seconds`."""
    return {
        "cpu_ms_per_image_main": round(1e3 * (c1[0] - c0[0]) / images, 2),
        "cpu_ms_per_image_workers": round(1e3 * max(c1[1] - c0[1], 0.0) / images, 2),
    }


@dataclass
class Measure:
    images: int
    seconds: float
    memory_mb: float | None = None
    extra: dict[str, Any] | None = None

    @property
    def ips(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = {"images": self.images, "seconds": round(self.seconds, 4), "images_per_s": round(self.ips, 3)}
        if self.memory_mb is not None:
            d["peak_memory_mb"] = round(self.memory_mb, 1)
        if self.extra:
            d.update(self.extra)
        return d


def make_model(model: str, n_labels: int, strategy: str) -> ColorTransferNet:
    colorizer, backbone = model.split("+")
    weights = str(MOBILENET_WEIGHTS) if backbone == "mobilenet_v2" and MOBILENET_WEIGHTS.is_file() else None
    torch.manual_seed(0)
    net = ColorTransferNet.create(colorizer, backbone, n_labels, weights, progress=False)
    net.apply_strategy(strategy)
    return net


def autocast(device: str, precision: str):
    if precision.startswith("bf16"):
        return torch.autocast(device, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device, dtype=torch.float16)
    return contextlib.nullcontext()


def masked_bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    mask = ~torch.isnan(y)
    loss = F.binary_cross_entropy_with_logits(logits.float(), torch.nan_to_num(y), reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1)


def train_steps(
    net: torch.nn.Module, batches, device: str, precision: str, channels_last: bool, warmup: int, steps: int
) -> Measure:
    """Plain loop: forward (autocast per ``precision``) + backward + SGD step; ``batches`` yields (x, y)."""
    net.train().to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=LR, momentum=0.9, weight_decay=1e-4)
    n, t0, ends = 0, 0.0, []
    with PeakMemory(device) as mem:
        for i, (x, y) in enumerate(batches):
            if i == warmup:
                sync(device)
                t0, c0 = time.perf_counter(), cpu_seconds()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                logits = net(x)
            loss = masked_bce(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= warmup:
                n += len(x)
                if i + 1 < warmup + steps:  # per-step times are indicative on a GPU (no sync per step)
                    ends.append(time.perf_counter())
            if i + 1 == warmup + steps:
                break
        sync(device)
        seconds, c1 = time.perf_counter() - t0, cpu_seconds()
        ends.append(time.perf_counter())
    net.to(memory_format=torch.contiguous_format)
    times = [round(b - a, 4) for a, b in zip([t0, *ends[:-1]], ends, strict=True)]
    return Measure(n, seconds, mem.mb, cpu_extra(c0, c1, n) | {"step_times_s": times})


def repeat_batches(batches: list[tuple[torch.Tensor, torch.Tensor]], device: str):
    on_dev = [(x.to(device), y.to(device)) for x, y in batches]
    while True:
        yield from on_dev


def bound_train(model, n_labels, strategy, mem_batches, device, precision, cl, warmup, steps) -> Measure:
    net = make_model(model, n_labels, strategy)
    return train_steps(net, repeat_batches(mem_batches, device), device, precision, cl, warmup, steps)


def naive_train(model, n_labels, strategy, paths, labels, size, batch, device, warmup, steps) -> Measure:
    net = make_model(model, n_labels, strategy)
    loader = DataLoader(NaiveFiles(paths, labels, size, train=True), batch_size=batch, shuffle=True, drop_last=True)

    def forever():
        while True:
            yield from loader

    return train_steps(net, forever(), device, "32-true", False, warmup, steps)


class StepTimer:
    """Lightning callback: timestamps of every training batch's start and end; stops the run after
    ``warmup + steps`` batches.  Images/s over the timed steps = images / (end[last] - end[warmup - 1])."""

    def __init__(self, warmup: int, steps: int, device: str) -> None:
        import lightning.pytorch as pl

        class _CB(pl.Callback):
            def on_train_batch_start(cb, trainer, pl_module, batch, batch_idx):
                self.starts.append(time.perf_counter())

            def on_train_batch_end(cb, trainer, pl_module, outputs, batch, batch_idx):
                if len(self.ends) in (warmup - 1, warmup + steps - 1):
                    sync(device)
                    self.cpu.append(cpu_seconds())
                self.ends.append(time.perf_counter())
                self.sizes.append(len(batch["image"]))
                if len(self.ends) == warmup + steps:
                    raise _Finished

        self.callback = _CB()
        self.warmup, self.steps = warmup, steps
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.sizes: list[int] = []
        self.cpu: list[tuple[float, float]] = []

    def measure(self) -> Measure:
        w, s = self.warmup, self.steps
        if len(self.ends) < w + s:
            raise RuntimeError(f"the medcolor run stopped after {len(self.ends)} of {w + s} steps")
        seconds = self.ends[w + s - 1] - self.ends[w - 1]
        wait = sum(self.starts[i] - self.ends[i - 1] for i in range(w, w + s))
        n = sum(self.sizes[w : w + s])
        return Measure(
            n,
            seconds,
            extra={
                **cpu_extra(self.cpu[0], self.cpu[1], n),
                "between_steps_s": round(wait, 4),  # data wait + loop/callback overhead outside the batch hooks
                "step_times_s": [round(self.ends[i] - self.ends[i - 1], 4) for i in range(w, w + s)],
            },
        )


def medcolor_train(data, model, strategy, batch, device, warmup, steps, tmp: Path) -> Measure:
    out = tmp / "run"
    # the sampler runs on past the timed steps: the workers keep preparing batches during them as in a long
    # run (with only warmup + steps batches they would have prefetched everything before the timing starts)
    iterations = 2 * (warmup + steps) + 8
    cfg = medcolor_run_config(
        data, model, batch=batch, iterations=iterations, strategy=strategy, out=out, device=device
    )
    timer = StepTimer(max(warmup, 1), steps, device)
    with PeakMemory(device) as mem:
        medcolor_fit(cfg, timer.callback)
    shutil.rmtree(out, ignore_errors=True)
    m = timer.measure()
    m.memory_mb = mem.mb
    return m


def pipeline(cfg, bundle, device, warmup: int, batches: int, keep: int = 0, uint8: bool = True) -> tuple[Measure, list]:
    """Batches/s of medcolor's training loader (+ the batch normalisation of uint8 crops and device-side
    augmentation as the model side runs them, + transfer to the device); ``uint8=False``: float32 batches
    normalised in the workers (the pipeline before uint8 batches)."""
    from medcolor.data.transforms import normalize_batch

    loader, device_aug = medcolor_train_loader(cfg, bundle, warmup + batches, device, uint8=uint8)
    kept = []
    n, t0 = 0, None
    with PeakMemory(device) as mem:
        for i, b in enumerate(loader):
            if i == warmup:
                sync(device)
                t0 = time.perf_counter()
            x = b["image"].to(device, non_blocking=True)
            if x.dtype == torch.uint8:
                x = normalize_batch(x, *b["normalization"])
            if device_aug is not None:
                x = device_aug(x, b["seed"])
            if len(kept) < keep:
                kept.append((x.cpu(), b["target"]))
            if i >= warmup:
                n += len(x)
        sync(device)
        seconds = time.perf_counter() - t0
    del loader
    gc.collect()
    return Measure(n, seconds, mem.mb, {"batches_per_s": round(batches / seconds, 2)}), kept


@torch.no_grad()
def infer_steps(net, batches, device, precision, cl, warmup: int, steps: int) -> Measure:
    net.eval().to(device)
    if cl:
        net.to(memory_format=torch.channels_last)
    n, t0 = 0, None
    with PeakMemory(device) as mem:
        for i, x in enumerate(batches):
            if i == warmup:
                sync(device)
                t0 = time.perf_counter()
            x = x.to(device, non_blocking=True)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                probs = torch.sigmoid(net(x).float()).cpu()
            if i >= warmup:
                n += len(probs)
            if i + 1 == warmup + steps:
                break
        sync(device)
        seconds = time.perf_counter() - t0
    net.to(memory_format=torch.contiguous_format)
    return Measure(n, seconds, mem.mb)


def predict_medcolor(model_path: Path, folder: Path, batch: int, device: str, precision: str) -> Measure:
    from medcolor.inference import predict_files

    n = len(list(folder.iterdir()))
    with PeakMemory(device) as mem:
        sync(device)
        t0 = time.perf_counter()
        df = predict_files(model_path, [folder], batch_size=batch, device=device, precision=precision)
        sync(device)
        seconds = time.perf_counter() - t0
    assert len(df) == n
    return Measure(n, seconds, mem.mb)


def predict_naive(net, files: list[str], size: int, batch: int, device: str) -> Measure:
    ds = NaiveFiles(files, None, size, train=False)
    with PeakMemory(device) as mem, torch.no_grad():
        net.eval().to(device)
        sync(device)
        t0 = time.perf_counter()
        out = []
        for s in range(0, len(ds), batch):
            x = torch.stack([ds[i] for i in range(s, min(s + batch, len(ds)))]).to(device)
            out.append(torch.sigmoid(net(x)).cpu())
        sync(device)
        seconds = time.perf_counter() - t0
    return Measure(len(files), seconds, mem.mb)


# =============================================================================================== the run


def machine_slug(device: str) -> tuple[str, str]:
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"), name
    model = "cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    short = re.sub(r"\((r|tm)\)|processor|cpu|@.*", "", model, flags=re.I)
    short = re.sub(r"[^a-z0-9]+", "-", short.lower()).strip("-") or platform.machine()
    cores = os.cpu_count() or 1
    return f"{short}-{cores}c", f"{model}, {cores} cores"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def median(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def run_case(args, dataset: str, model: str, tmp: Path) -> dict[str, Any]:
    data, size = dataset_config(dataset, args.size)
    device, batch = args.device, args.batch_size
    _, precision, cl = medcolor_resolved(device)
    cfg = medcolor_run_config(data, model, batch=batch, iterations=1, strategy=args.strategy, out=tmp / "unused")
    bundle = medcolor_bundle(cfg)
    n_labels = len(bundle.label_names)
    paths = [str(p) for p in bundle.train.paths]
    labels = np.asarray(bundle.train.labels, dtype=np.float32)
    log(
        f"{dataset} {size} px, {model}: {len(paths)} training images, labels {bundle.label_names}, {precision}"
        f"{', channels_last' if cl else ''}, batch {batch}, device {device}"
    )

    # a cached copy of the same training images (what `cache_dir` + a built cache gives)
    cache_cfg = medcolor_run_config(
        {**data, "cache_dir": str(tmp / "cache")},
        model,
        batch=batch,
        iterations=1,
        strategy=args.strategy,
        out=tmp / "unused",
    )
    cache_bundle = medcolor_bundle(cache_cfg)  # data.cache_dir: the run's images are decoded into it

    # inputs for the bounds: real batches from medcolor's own loader, kept in memory
    pipe_batches = args.pipeline_batches
    rounds: list[dict[str, Any]] = []
    mem_batches: list = []
    infer_dir = tmp / "predict-in"
    infer_dir.mkdir(exist_ok=True)
    infer_files = paths[: args.infer_images]
    for i, p in enumerate(infer_files):
        link = infer_dir / f"{i:05d}{Path(p).suffix}"
        if not link.exists():
            link.symlink_to(p)
    model_path = tmp / "model.safetensors"
    from medcolor.io import save_model

    save_model(
        make_model(model, n_labels, args.strategy),
        model_path,
        label_names=bundle.label_names,
        normalization={"mean": CHEXPERT_MEAN, "std": CHEXPERT_STD},
        size=size,
    )

    for r in range(args.rounds):
        row: dict[str, Any] = {"round": r + 1, "loadavg_start": load()}
        log(f"  round {r + 1}/{args.rounds}, load {row['loadavg_start']}")
        m, kept = pipeline(cfg, bundle, device, 1, pipe_batches, keep=0 if mem_batches else 2)
        mem_batches = mem_batches or kept
        row["pipeline"] = m.to_dict()
        m, _ = pipeline(cache_cfg, cache_bundle, device, 1, pipe_batches)
        row["pipeline_cache"] = m.to_dict()
        # before the uint8 pipeline (float32 batches normalised in the workers), interleaved in the same round
        row["pipeline_float"] = pipeline(cfg, bundle, device, 1, pipe_batches, uint8=False)[0].to_dict()
        row["pipeline_cache_float"] = pipeline(cache_cfg, cache_bundle, device, 1, pipe_batches, uint8=False)[
            0
        ].to_dict()
        log(
            f"    pipeline {row['pipeline']['images_per_s']:.0f} img/s (float32 batches "
            f"{row['pipeline_float']['images_per_s']:.0f}), with cache {row['pipeline_cache']['images_per_s']:.0f} "
            f"img/s (float32 {row['pipeline_cache_float']['images_per_s']:.0f})"
        )
        if args.pipeline_only:
            row["loadavg_end"] = load()
            rounds.append(row)
            continue
        gc.collect()
        row["train_bound"] = bound_train(
            model, n_labels, args.strategy, mem_batches, device, precision, cl, args.warmup, args.steps
        ).to_dict()
        log(f"    train bound {row['train_bound']['images_per_s']:.2f} img/s")
        gc.collect()
        row["train_medcolor"] = medcolor_train(
            data, model, args.strategy, batch, device, args.warmup, args.steps, tmp
        ).to_dict()
        log(f"    train medcolor {row['train_medcolor']['images_per_s']:.2f} img/s")
        gc.collect()
        row["train_naive"] = naive_train(
            model, n_labels, args.strategy, paths, labels, size, batch, device, args.warmup, args.steps
        ).to_dict()
        log(f"    train naive {row['train_naive']['images_per_s']:.2f} img/s")
        gc.collect()
        net = make_model(model, n_labels, args.strategy)
        xs = [x for x, _ in mem_batches]
        row["infer_bound"] = infer_steps(
            net, (xs[i % len(xs)] for i in range(10**9)), device, precision, cl, 1, args.infer_images // batch
        ).to_dict()
        row["infer_bound_fp32"] = infer_steps(
            net, (xs[i % len(xs)] for i in range(10**9)), device, "32-true", False, 1, args.infer_images // batch
        ).to_dict()
        row["predict"] = predict_medcolor(model_path, infer_dir, batch, device, "auto").to_dict()
        row["predict_fp32"] = predict_medcolor(model_path, infer_dir, batch, device, "32-true").to_dict()
        row["predict_naive"] = predict_naive(net, infer_files, size, batch, device).to_dict()
        del net
        gc.collect()
        log(
            f"    infer bound {row['infer_bound']['images_per_s']:.2f}"
            f" (fp32 {row['infer_bound_fp32']['images_per_s']:.2f}),"
            f" predict {row['predict']['images_per_s']:.2f} (fp32 {row['predict_fp32']['images_per_s']:.2f}),"
            f" naive {row['predict_naive']['images_per_s']:.2f} img/s"
        )
        row["loadavg_end"] = load()
        rounds.append(row)

    def ratio(a: str, b: str) -> float:
        return round(median([x[a]["images_per_s"] / x[b]["images_per_s"] for x in rounds]), 3)

    keys = [k for k in rounds[0] if isinstance(rounds[0][k], dict)]
    summary = {k: round(median([x[k]["images_per_s"] for x in rounds]), 3) for k in keys}
    memory = {k: max((x[k].get("peak_memory_mb") or 0) for x in rounds) for k in keys}
    pipe_ratios = {
        "pipeline/float": ratio("pipeline", "pipeline_float"),
        "pipeline_cache/float": ratio("pipeline_cache", "pipeline_cache_float"),
    }
    ratios = (
        {}
        if args.pipeline_only
        else {
            "train_medcolor/naive": ratio("train_medcolor", "train_naive"),
            "train_medcolor/bound": ratio("train_medcolor", "train_bound"),
            "train_naive/bound": ratio("train_naive", "train_bound"),
            # load-robust cross-check: the fastest step of each variant (the shared machine's noise only slows steps)
            "train_medcolor/bound_fastest_step": round(
                median(
                    [min(x["train_bound"]["step_times_s"]) / min(x["train_medcolor"]["step_times_s"]) for x in rounds]
                ),
                3,
            ),
            "predict/naive": ratio("predict", "predict_naive"),
            "predict/bound": ratio("predict", "infer_bound"),
            "predict_fp32/bound_fp32": ratio("predict_fp32", "infer_bound_fp32"),
            "predict_naive/bound": ratio("predict_naive", "infer_bound"),
        }
    )
    ratios.update(pipe_ratios)
    return {
        "dataset": dataset,
        "size": size,
        "model": model,
        "strategy": args.strategy,
        "batch_size": batch,
        "precision": precision,
        "channels_last": cl,
        "train_images": len(paths),
        "predict_images": len(infer_files),
        "images_per_s": summary,
        "peak_memory_mb": memory,
        "ratios": ratios,
        "rounds": rounds,
    }


ROWS = [  # (key, mode, variant, ratio-to-naive key, ratio-to-bound key)
    ("train_bound", "train", "bound (in-memory batches)", None, None),
    ("train_medcolor", "train", "medcolor `train()`", "train_medcolor/naive", "train_medcolor/bound"),
    ("train_naive", "train", "naive torchvision", None, "train_naive/bound"),
    ("pipeline", "input", "medcolor loader, no model (uint8 batches)", None, None),
    ("pipeline_float", "input", "  same, float32 batches (before)", None, None),
    ("pipeline_cache", "input", "medcolor loader + built cache (uint8 batches)", None, None),
    ("pipeline_cache_float", "input", "  same, float32 batches (before)", None, None),
    ("infer_bound", "predict", "bound (in-memory, medcolor precision)", None, None),
    ("infer_bound_fp32", "predict", "bound fp32 NCHW", None, None),
    ("predict", "predict", "medcolor `predict_files` (its default precision)", "predict/naive", "predict/bound"),
    ("predict_fp32", "predict", "medcolor `predict_files` (32-true) / fp32 bound", None, "predict_fp32/bound_fp32"),
    ("predict_naive", "predict", "naive PIL + v2 loop, fp32", None, "predict_naive/bound"),
]


def table(cases: list[dict[str, Any]]) -> str:
    lines = [
        "| data | model | mode | variant | images/s | medcolor/naive | /bound | peak MB |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for c in cases:
        for key, mode, variant, rn, rb in ROWS:
            if key not in c["images_per_s"]:
                continue
            ips = c["images_per_s"][key]
            mem = c["peak_memory_mb"].get(key)
            to_naive = f"{c['ratios'][rn]:.2f}x" if rn else ""
            to_bound = f"{c['ratios'][rb]:.2f}x" if rb else ""
            lines.append(
                f"| {c['dataset']} {c['size']} px | {c['model']} | {mode} | {variant} | {ips:,.2f} | "
                f"{to_naive} | {to_bound} | {mem:,.0f} |"
            )
    return "\n".join(lines)


def targets(cases: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    out = []
    for c in cases:
        if c["model"] != "pixelshuffle+resnet18" or c["dataset"] != "covid":
            continue
        r, s = c["ratios"], c["images_per_s"]
        where = f"{c['model']}, {c['size']} px, batch {c['batch_size']}, {device}"
        if "train_medcolor/naive" not in r:  # --pipeline-only
            for name, value in (("input pipeline alone", s["pipeline"]), ("+ built cache", s["pipeline_cache"])):
                out.append(
                    {"target": f"{name} >= 2,000 images/s", "where": where, "measured": value, "goal": 2000.0}
                    | {"met": value >= 2000.0}
                )
            continue
        checks = [
            ("medcolor >= 2.0x naive (training)", r["train_medcolor/naive"], 2.0),
            ("medcolor >= 0.9x bound (training)", r["train_medcolor/bound"], 0.9),
            ("  same, fastest step of each (load-robust check)", r["train_medcolor/bound_fastest_step"], 0.9),
            ("input pipeline alone >= 2,000 images/s", s["pipeline"], 2000.0),
            ("input pipeline + built cache >= 2,000 images/s", s["pipeline_cache"], 2000.0),
            ("predict >= 0.9x inference bound (whole call: model load, decoding)", r["predict/bound"], 0.9),
            ("  predict 32-true vs the fp32 NCHW bound", r["predict_fp32/bound_fp32"], 0.9),
        ]
        for name, value, goal in checks:
            out.append({"target": name, "where": where, "measured": value, "goal": goal, "met": value >= goal})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one model, COVID only, 1 round, 2 timed steps (< 3 min)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch-size", type=int, default=None, help="default 16 on CPU, 64 on a GPU")
    ap.add_argument("--size", type=int, default=320, help="input size of the COVID images (Kermany: 224)")
    ap.add_argument("--models", default=",".join(ALL_MODELS))
    ap.add_argument("--datasets", default="covid,kermany")
    ap.add_argument("--strategy", default="color-module", help="the stage trained (medcolor's default first stage)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per variant (CPU 3, GPU 30)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (CPU 2, quick 1, GPU 5)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2, quick 1)")
    ap.add_argument("--infer-images", type=int, default=None, help="files in the predict folder (CPU 128, GPU 1024)")
    ap.add_argument(
        "--pipeline-batches", type=int, default=None, help="timed loader batches (CPU 100, quick 40, GPU 200)"
    )
    ap.add_argument("--pipeline-only", action="store_true", help="only the input pipeline (uint8 vs float32 batches)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = args.device == "cuda"
    if args.quick:
        args.models = ALL_MODELS[0]
        args.datasets = "covid"
    args.batch_size = args.batch_size or (64 if gpu else 16)
    args.steps = args.steps or (30 if gpu else (2 if args.quick else 3))
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else (1 if args.quick else 2))
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.infer_images = args.infer_images or (1024 if gpu else (32 if args.quick else 128))
    args.pipeline_batches = args.pipeline_batches or (200 if gpu else (40 if args.quick else 100))

    import lightning.pytorch  # noqa: F401 - it sets its loggers to INFO on import; quieten them afterwards

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    slug, machine = machine_slug(args.device)
    t_start = time.time()
    info = {
        "machine": machine,
        "slug": slug,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_start": load(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    log(
        f"{machine}; device {args.device}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"load {info['loadavg_start']}"
    )
    cases = []
    with tempfile.TemporaryDirectory(prefix="medcolor-throughput-") as tmp:
        for dataset in args.datasets.split(","):
            for model in args.models.split(","):
                case_dir = Path(tmp) / f"{dataset}-{model}"
                case_dir.mkdir()
                cases.append(run_case(args, dataset, model, case_dir))
                shutil.rmtree(case_dir, ignore_errors=True)
    info["loadavg_end"] = load()
    info["seconds"] = round(time.time() - t_start, 1)
    result = {**info, "targets": targets(cases, args.device), "cases": cases}

    text = table(cases)
    lines = [
        f"# Throughput on {machine} ({args.device})",
        "",
        f"`PYTHONPATH=src python benchmarks/throughput.py{' --quick' if args.quick else ''}` on {info['started']}: "
        f"batch {args.batch_size}, strategy {args.strategy}, {args.rounds} interleaved round(s) of {args.warmup} "
        f"warm-up + {args.steps} timed training steps per variant, {args.infer_images} files to predict; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads). Load average (1/5/15 min) "
        f"{info['loadavg_start']} at the start, {info['loadavg_end']} at the end; "
        f"the run took {info['seconds']:.0f} s.",
        "",
        text,
        "",
        "Ratios are medians of per-round ratios; images/s are medians over rounds. Peak memory: "
        + ("`torch.cuda.max_memory_allocated`." if gpu else "main-process peak RSS + workers' private memory."),
        "",
        "| target | where | measured | goal | met |",
        "|---|---|---:|---:|---|",
        *[
            f"| {t['target']} | {t['where']} | {t['measured']:,.2f} | {t['goal']:,.1f} | "
            f"{'yes' if t['met'] else 'NO'} |"
            for t in result["targets"]
        ],
        "",
    ]
    md = "\n".join(lines)
    print("\n" + md)
    args.out.mkdir(parents=True, exist_ok=True)
    name = slug + ("-quick" if args.quick else "") + ("-pipeline" if args.pipeline_only else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(md)
    log(f"written {args.out / (name + '.json')} and .md ({info['seconds']:.0f} s)")


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main()
