"""What ``torch.utils.deterministic.fill_uninitialized_memory`` costs a training step with deterministic
algorithms on (medcolor's ``deterministic: warn``): ``aten::fill_`` calls and their share of the step's CPU time
in torch.profiler, on the throughput benchmark's bound step (pixelshuffle + resnet18, color-module, bf16 autocast,
channels_last, batch 16), alternating on/off.  Op counts and shares, unlike wall time, survive a shared machine.

    PYTHONPATH=src python benchmarks/deterministic_fill.py [SIZE]   # default 320
"""

import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 320
    net = tp.make_model("pixelshuffle+resnet18", 1, "color-module")
    net.train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    x = torch.randn(16, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.rand(16, 1).round()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x)
        loss = tp.masked_bce(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    torch.use_deterministic_algorithms(True, warn_only=True)
    step()
    for fill in (True, False, True, False):
        torch.utils.deterministic.fill_uninitialized_memory = fill
        with profile(activities=[ProfilerActivity.CPU]) as p:
            step()
        ev = {e.key: e for e in p.key_averages()}
        total = sum(e.self_cpu_time_total for e in ev.values()) / 1e3
        f = ev.get("aten::fill_")
        calls, ms = (f.count, f.self_cpu_time_total / 1e3) if f else (0, 0.0)
        print(
            f"{size} px, fill_uninitialized_memory={fill}: {calls} fill_ calls, "
            f"{ms:.0f} ms of {total:.0f} ms self CPU ({100 * ms / total:.1f} %)",
            flush=True,
        )


if __name__ == "__main__":
    main()
