"""How far bf16 inference is from fp32 on real images, and how much faster: the numbers behind the
precision rule of ``medcolor predict`` / ``evaluate`` (both fp32 by default; ``--precision bf16-mixed``
the fast option).

Trains a tiny run on Kermany (MobileNetV2 + colorU, ``color-module`` then ``all``, a few iterations; or
takes ``--run DIR``), predicts ``--images`` Kermany training images with both precisions through
``medcolor.inference.predict_files`` and prints the worst-case and mean absolute probability difference and
the images/s of each (best of ``--repeats``), with the CPU model and its bf16/AMX flags.  Say whether the
machine was quiet: under load the speed ratio swings.

    PYTHONPATH=src python benchmarks/precision_agreement.py --size 224 --images 50
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

KERMANY = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany-pneumonia-224"
WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "mobilenet_v2-imagenet-features.pth"


def cpu_name() -> str:
    try:
        flags, name = "", platform.processor()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line
        has = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f" {f}" in flags]
        return f"{name} ({', '.join(has) or 'no bf16 flags'})"
    except OSError:
        return platform.processor() or "unknown CPU"


def train_tiny(out: Path, size: int, root: Path) -> Path:
    from medcolor.cli import main

    args = [
        "train", "--dataset", "folder", "--root", str(root), "--train-split", "train",
        "--option", "patient_regex=kermany", "--subset", "160", "--val", "0.03", "--test", "0.03",
        "--backbone", "mobilenet_v2", "--weights", str(WEIGHTS), "--colorizer", "colorU",
        "--stages", "color-module,all", "--lr", "0.02", "--iterations", "6", "--val-every", "3",
        "--size", str(size), "--batch-size", "16", "--num-workers", "0", "--no-progress", "--bootstrap", "20",
        "--output", str(out),
    ]  # fmt: skip
    if main(args) != 0:
        raise SystemExit("training the tiny run failed")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, help="a finished run directory (default: train a tiny one)")
    ap.add_argument("--root", type=Path, default=KERMANY)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    a = ap.parse_args()

    import torch

    from medcolor.inference import predict_files

    run = a.run or train_tiny(Path(tempfile.mkdtemp()) / "tiny", a.size, a.root)
    files = sorted((a.root / "train").rglob("*.jpeg"))
    files = files[:: max(1, len(files) // a.images)][: a.images]
    probs, speed = {}, {}
    for precision in ("32-true", "bf16-mixed"):
        best = float("inf")
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            df = predict_files(run, files, precision=precision, device="cpu", batch_size=16)
            best = min(best, time.perf_counter() - t0)
        probs[precision] = df.drop(columns="path").to_numpy()
        speed[precision] = len(files) / best
    diff = np.abs(probs["32-true"] - probs["bf16-mixed"])
    out = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "images": len(files),
        "size": a.size,
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "fp32_images_per_s": speed["32-true"],
        "bf16_images_per_s": speed["bf16-mixed"],
        "bf16_speedup": speed["bf16-mixed"] / speed["32-true"],
        "run": str(run),
    }
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
