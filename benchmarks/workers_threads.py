"""Study throughput on a small CPU: one worker with every core as torch threads, or one worker per core?

    python benchmarks/workers_threads.py [--backbone mobilenet_v2] [--colorizer colorU] [--size 224] [--batch 32]

``medcolor study run --workers N`` gives each of N worker processes the cores divided among them as torch
threads.  This measures, within one invocation, the training-step throughput (images/s, all processes together)
of 1 process x C threads against C processes x 1 thread (C = the cores), for a frozen-E stage (color-module)
and a fine-tuned one (all), bf16 autocast + channels_last where the CPU has bf16 (as ``precision: auto``).
Appends a section to benchmarks/results/workers_threads.md.  Run it with nothing else running.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from medcolor.model import ColorTransferNet
from medcolor.training.runtime import cpu_bf16_flags, cpu_name


def _steps(args: tuple[str, str, str, int, int, int, float, bool, Any]) -> tuple[int, float]:
    """Train steps for ``seconds`` after a warm-up and after every process has warmed up (``barrier``: the
    processes' timed windows are the same); returns (images, seconds)."""
    backbone, colorizer, strategy, size, batch, threads, seconds, bf16, barrier = args
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = ColorTransferNet.create(colorizer, backbone, 1)
    net.apply_strategy(strategy, frozen_bn="fastai")
    net.train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    x = torch.rand(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1) > 0.5).float()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # oneDNN primitive creation
        step()
    barrier.wait()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += batch
    return n, time.perf_counter() - t0


def measure(
    backbone: str,
    colorizer: str,
    strategy: str,
    size: int,
    batch: int,
    procs: int,
    threads: int,
    seconds: float,
    bf16: bool,
) -> float:
    """Images/s of ``procs`` processes of ``threads`` threads each, training at once (summed)."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(procs) as pool:
        barrier = manager.Barrier(procs)
        args = (backbone, colorizer, strategy, size, batch, threads, seconds, bf16, barrier)
        out = pool.map(_steps, [args] * procs)
    return sum(n / s for n, s in out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--colorizer", default="colorU")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=25.0, help="measured time per configuration")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "workers_threads.md"))
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)  # as study
    flags = cpu_bf16_flags()
    bf16 = bool(flags)
    rows = []
    for strategy in ("color-module", "all"):
        one = measure(a.backbone, a.colorizer, strategy, a.size, a.batch, 1, cores, a.seconds, bf16)
        many = measure(a.backbone, a.colorizer, strategy, a.size, a.batch, cores, 1, a.seconds, bf16)
        rows.append(f"| {strategy} | {one:.1f} | {many:.1f} | {many / one:.2f}x |")
        print(rows[-1], flush=True)
    head = (
        f"\n## {a.colorizer} + {a.backbone}, {a.size} px, batch {a.batch}, "
        f"{'bf16 autocast' if bf16 else 'fp32'} + channels_last — {cpu_name()} "
        f"({', '.join(flags) or 'no bf16'}), {cores} cores, torch {torch.__version__}, {platform.machine()}\n\n"
        f"| stage | 1 process x {cores} threads (images/s) | {cores} processes x 1 thread (images/s, summed) "
        "| ratio |\n"
        "|---|---:|---:|---:|\n"
    )
    with open(a.out, "a", encoding="utf-8") as f:
        f.write(head + "\n".join(rows) + "\n")
    print(f"appended to {a.out}")


if __name__ == "__main__":
    main()
