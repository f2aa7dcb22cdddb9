"""What a study costs before it runs: iterations per cell and an estimate in GPU-hours (``--dry-run``).

The cost model counts floating-point operations and divides them by an assumed sustained throughput:

* per image, the forward pass of T and E at the cell's input size is *measured* with
  ``torch.utils.flop_counter`` (on the meta device: no memory, no data; multiply and add counted
  separately); C is negligible;
* a training step costs ``F_T * (1 + t) + F_E * (1 + e + t)`` per image, where ``t`` = 1 if the stage
  trains T and ``e`` = 1 if it trains E: the forward pass, plus a weight-gradient pass for each trained
  part, plus an input-gradient pass through E when T (in front of it) trains.  A frozen-E ``baseline``
  step is thus about one forward pass, ``all`` about three;
* a stage is ``iterations x batch x world size`` images (``epochs`` need the training-set size:
  ``estimate.train_images`` in the spec — one number, or one per dataset name — less the val/test
  fractions, then the subset); an LR range test (``lr: find``) adds its ``num_training`` steps; each
  validation is a forward pass over the validation images, and the final test one over the test images
  (fractions of ``train_images``, or ``estimate.val_images`` / ``test_images`` for official splits);
* GPU-seconds = FLOPs / (``tflops`` x 10^12).  The default, 20 TFLOP/s sustained, is an assumption,
  not a measurement: roughly what ResNet-sized CNNs reach end to end in mixed precision on an
  A100-class GPU at batch 16-64 (a few % to ~10 % of its bf16 peak once data loading, small batches and
  memory-bound layers are counted).  Give your own with ``estimate.tflops`` or ``--tflops``.

What it leaves out: data loading and JPEG decoding (often the bottleneck at 320 px), start-up, checkpoint
writes, and the gap between FLOPs and time on memory-bound networks (DenseNet runs slower than its FLOPs
suggest).  Treat the figure as an order of magnitude for planning GPU allocations.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from medcolor.config import Count, LRFind, RunConfig
from medcolor.training.plan import iterations_per_epoch, run_colorizer, stage_iterations

DEFAULT_TFLOPS = 20.0


@functools.cache
def forward_gflops(kind: str, name: str, size: int) -> float:
    """GFLOPs of one forward pass of one image through a colorizer (1 channel) or a backbone (3 channels)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if kind == "colorizer":
        from medcolor.colorizers import create_colorizer

        with torch.device("meta"):
            m = create_colorizer(name)
        x = torch.zeros(1, 1, size, size, device="meta")
    else:
        from medcolor.backbones import create_backbone

        with torch.device("meta"):
            m = create_backbone(name, None)
        x = torch.zeros(1, 3, size, size, device="meta")
    m.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        m(x)
    return counter.get_total_flops() / 1e9


def _split_size(value: Any, images: float | None, explicit: float | None) -> float | None:
    if isinstance(value, float) and images is not None:
        return value * images
    if isinstance(value, str):
        return explicit
    return None


def _image_counts(cfg: RunConfig, est: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """Training (after the val/test fractions and the subset), validation and test images of a run, where the
    spec's ``estimate`` says enough to know them (None where it does not)."""
    d = cfg.data
    pool = est.get("train_images")
    val_frac = d.val if isinstance(d.val, float) else 0.0
    test_frac = d.test if isinstance(d.test, float) else 0.0
    if pool is not None:
        pool = pool * max(0.0, 1.0 - val_frac - test_frac)
    n_train: float | None = pool
    if d.subset is not None:
        n_train = d.subset.of(pool) if pool is not None else (d.subset if isinstance(d.subset, Count) else None)
    n_val = _split_size(d.val, est.get("train_images"), est.get("val_images"))
    n_test = _split_size(d.test, est.get("train_images"), est.get("test_images")) if d.test is not None else None
    return n_train, n_val, n_test


def estimate_run(cfg: RunConfig, estimate: dict[str, Any] | None = None) -> dict[str, Any]:
    """Iterations per stage and estimated FLOPs / GPU-hours of one run (see the module docstring)."""
    from medcolor.colorizers import COLORIZERS

    d = cfg.data
    est = {k: (v.get(d.dataset.lower()) if isinstance(v, dict) else v) for k, v in (estimate or {}).items()}
    tflops = float(est.get("tflops") or DEFAULT_TFLOPS)
    n_train, n_val, n_test = _image_counts(cfg, est)
    colorizer = run_colorizer(cfg)
    try:
        f_t = forward_gflops("colorizer", COLORIZERS.canonical(colorizer), d.size)
        f_e = forward_gflops("backbone", cfg.model.backbone, d.size)
    except Exception as exc:  # an unknown name: the plan marks the cell invalid anyway
        return {"iterations": None, "tflop": None, "gpu_hours": None, "notes": [f"no estimate: {exc}"]}
    learnable = COLORIZERS.get(colorizer).learnable or bool(cfg.model.colorizer_from)
    iterations, flops = _stage_flops(cfg, n_train, n_val, f_t, f_e, learnable)
    known = None not in iterations
    if n_test is not None:
        flops += n_test * (f_t + f_e)
    notes = []
    if not known:
        notes.append("stages given in epochs need estimate.train_images in the spec")
    if n_val is None:
        notes.append("validation passes not counted (give estimate.val_images)")
    total = flops * 1e9 if known else None
    return {
        "iterations": iterations,
        "train_images": None if n_train is None else int(n_train),
        "gflop_per_image": {"T": round(f_t, 3), "E": round(f_e, 3)},
        "tflop": None if total is None else total / 1e12,
        "gpu_hours": None if total is None else total / (tflops * 1e12) / 3600,
        "tflops_assumed": tflops,
        "notes": notes,
    }


def _stage_flops(
    cfg: RunConfig, n_train: float | None, n_val: float | None, f_t: float, f_e: float, learnable: bool
) -> tuple[list[int | None], float]:
    """Iterations of each stage (None where unknown) and the GFLOPs of the stages whose length is known:
    training steps, LR range test steps and validation passes."""
    from medcolor.strategies import get_strategy

    batch = cfg.data.batch_size
    world = (cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else 1) * max(1, cfg.trainer.num_nodes)
    iterations: list[int | None] = []
    flops = 0.0
    for st in cfg.stages:
        s = get_strategy(st.strategy)
        it = stage_iterations(st, None if n_train is None else int(n_train), batch, world)
        iterations.append(it)
        if it is None:
            continue
        t = 1 if (s.train_colorizer and learnable) else 0
        e = 1 if s.train_backbone else 0
        step = f_t * (1 + t) + f_e * (1 + e + t)
        flops += it * batch * world * step
        if isinstance(st.lr, LRFind):
            flops += st.lr_find.num_training * batch * world * step
        if n_val is not None:
            val_every = st.val_every or iterations_per_epoch(int(n_train or 1), batch, world)
            flops += math.ceil(it / min(val_every, it)) * n_val * (f_t + f_e)
    return iterations, flops


__all__ = ["DEFAULT_TFLOPS", "estimate_run", "forward_gflops"]
