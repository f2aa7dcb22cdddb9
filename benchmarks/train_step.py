"""Training-step throughput of C(E(T(x))) on this machine: fp32 vs bf16 autocast, NCHW vs channels_last.

    python benchmarks/train_step.py [--backbone resnet18] [--colorizer pixelshuffle] [--size 224] [--batch 16]

Writes a markdown table to benchmarks/results/train_step.md (appends one section per invocation).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from pathlib import Path

import torch

from medcolor.model import ColorTransferNet


def bench(
    backbone: str, colorizer: str, size: int, batch: int, bf16: bool, channels_last: bool, steps: int, strategy: str
) -> float:
    torch.manual_seed(0)
    net = ColorTransferNet.create(colorizer, backbone, 5)
    net.apply_strategy(strategy, frozen_bn="fastai")
    net.train()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    x = torch.rand(batch, 1, size, size)
    y = (torch.rand(batch, 5) > 0.5).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        with ctx:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up (oneDNN primitive creation)
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--colorizer", default="pixelshuffle")
    ap.add_argument("--strategy", default="all")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_step.md"))
    a = ap.parse_args()
    rows = []
    base = None
    for bf16 in (False, True):
        for cl in (False, True):
            ips = bench(a.backbone, a.colorizer, a.size, a.batch, bf16, cl, a.steps, a.strategy)
            base = base or ips
            rows.append((("bf16 autocast" if bf16 else "fp32"), ("channels_last" if cl else "NCHW"), ips, ips / base))
            print(rows[-1], flush=True)
    head = (
        f"\n## {a.colorizer} + {a.backbone}, strategy {a.strategy}, {a.size} px, batch {a.batch} "
        f"({torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__})\n\n"
    )
    table = "| precision | memory format | images/s | vs fp32 NCHW |\n|---|---|---|---|\n" + "\n".join(
        f"| {p} | {m} | {ips:.1f} | {r:.2f}x |" for p, m, ips, r in rows
    )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(head + table + "\n")
    print(head + table)


if __name__ == "__main__":
    main()
