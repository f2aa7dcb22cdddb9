"""Does ``torch.compile`` speed up medcolor's training step here?  Eager vs compiled C(E(T(x))), in ONE
process, interleaved, in medcolor's precision and memory format (bf16 autocast + channels_last where the CPU
has bf16), forward + backward + SGD step on a batch in memory.

    python benchmarks/compile.py [--colorizer pixelshuffle] [--backbone resnet18] [--size 224] [--batch 16]
        [--strategy color-module] [--steps 6] [--mode default]

Prints the compile time (first compiled step) and the images/s of both; appends a section to
benchmarks/results/compile.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from medcolor.model import ColorTransferNet
from medcolor.training.runtime import resolve_precision
from medcolor.utils import autocast


def make(colorizer: str, backbone: str, strategy: str, cl: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = ColorTransferNet.create(colorizer, backbone, 5, None, progress=False)
    net.apply_strategy(strategy)
    net.train()
    if cl:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    return net, opt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--colorizer", default="pixelshuffle")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--strategy", default="color-module")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--mode", default="default", help="torch.compile mode")
    args = ap.parse_args()
    precision = resolve_precision("auto", "cpu")
    cl = True
    x = torch.rand(args.batch, 1, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(args.batch, 5) > 0.5).float()

    def stepper(net: torch.nn.Module, opt: torch.optim.Optimizer):
        def step() -> None:
            with autocast("cpu", precision):
                logits = net(x)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    eager = stepper(*make(args.colorizer, args.backbone, args.strategy, cl))
    net_c, opt_c = make(args.colorizer, args.backbone, args.strategy, cl)
    compiled_net = torch.compile(net_c, mode=args.mode)
    compiled = stepper(compiled_net, opt_c)
    t0 = time.perf_counter()
    compiled()  # compiles
    compile_s = time.perf_counter() - t0
    compiled()
    eager()
    eager()
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for name, fn in (("eager", eager), ("compiled", compiled)):
            for _ in range(args.steps):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    ips = {k: args.batch / statistics.median(v) for k, v in times.items()}
    ratio = ips["compiled"] / ips["eager"]
    what = (
        f"{args.colorizer}+{args.backbone}, {args.strategy}, {args.size} px, batch {args.batch}, {precision}, "
        f"channels_last, torch.compile mode={args.mode}"
    )
    line = f"| {what} | {ips['eager']:.2f} | {ips['compiled']:.2f} | {ratio:.2f}x | {compile_s:.0f} s |"
    print(line)
    out = Path(__file__).resolve().parent / "results" / "compile.md"
    head = (
        ""
        if out.exists()
        else (
            "# torch.compile vs eager, training step (benchmarks/compile.py)\n\n"
            "Median images/s over interleaved rounds, one process; compile time = the first compiled step.\n\n"
            "| setting | eager img/s | compiled img/s | compiled / eager | compile time |\n|---|---:|---:|---:|---:|\n"
        )
    )
    host = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    with out.open("a") as f:
        f.write(head + line.replace("| ", f"| {host}: ", 1) + "\n")


if __name__ == "__main__":
    main()
