"""Frozen-E feature cache: C trained on cached E features vs the ordinary path, at 224 px on Kermany.

For each backbone (MobileNetV2 and EfficientNet-Lite0 with their real ImageNet weights) the same
``baseline`` stage (E frozen with ``frozen_bn: eval``, augmentation off: the linear-probe protocol) runs

1. ``--feature-cache off`` (E forward on every image, every step),
2. ``--feature-cache auto`` with an empty cache (features computed once, then C trains on them),
3. ``--feature-cache auto`` again with another seed (features reused from the cache),

and prints the stage times, the speed-ups and the test AUCs (1 and 2 must agree: the cache is exact).
The default is all 5,216 Kermany training images and two epochs; ``--subset``/``--iterations``/``--size``
shrink it for a smoke test.  Say which CPU/GPU and whether the machine was quiet when quoting the numbers.

    PYTHONPATH=src python benchmarks/feature_cache.py --json benchmarks/results/feature_cache.json
    PYTHONPATH=src python benchmarks/feature_cache.py --subset 32 --iterations 2 --size 64   # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
BACKBONES = {
    "mobilenet_v2": SHARED / "weights" / "mobilenet_v2-imagenet-features.pth",
    "timm:tf_efficientnet_lite0": SHARED / "weights" / "efficientnet_lite0-imagenet-timm.pth",
}


def run(out: Path, backbone: str, weights: Path, a: argparse.Namespace, cache: str, seed: int) -> dict:
    from medcolor.cli import main

    args = [
        "train", "--dataset", "folder", "--root", str(a.root), "--train-split", "train",
        "--option", "patient_regex=kermany", "--val", "0.1", "--test", "0.1",
        "--backbone", backbone, "--weights", str(weights), "--stages", "baseline", "--frozen-bn", "eval",
        "--no-augment", "--lr", "0.02", "--size", str(a.size), "--batch-size", str(a.batch_size),
        "--cache-dir", str(a.cache_dir), "--feature-cache", cache, "--seed", str(seed), "--no-progress",
        "--bootstrap", "0", "--output", str(out), "--overwrite",
    ]  # fmt: skip
    if a.subset:
        args += ["--subset", str(a.subset)]
    args += ["--iterations", str(a.iterations)] if a.iterations else ["--epochs", str(a.epochs)]
    t0 = time.perf_counter()
    if main(args) != 0:
        raise SystemExit(f"training failed: {' '.join(args)}")
    total = time.perf_counter() - t0
    stage = json.loads((out / "1-baseline" / "result.json").read_text())
    test = json.loads((out / "test" / "metrics.json").read_text())
    return {"total_s": total, "stage_s": stage["time_s"], "test_mean_auc": test["mean_auc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=SHARED / "data" / "kermany-pneumonia-224")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--subset", type=int, help="training images (default: all)")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--iterations", type=int, help="instead of --epochs")
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    ap.add_argument("--cache-dir", type=Path, help="image + feature cache (default: a fresh temporary folder)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    a.cache_dir = a.cache_dir or Path(tempfile.mkdtemp(prefix="medcolor-bench-cache-"))
    work = Path(tempfile.mkdtemp(prefix="medcolor-bench-fc-"))

    results = {"machine": f"{platform.processor() or platform.machine()}", "size": a.size, "rows": []}
    for backbone in a.backbones:
        weights = BACKBONES[backbone]
        plain = run(work / "plain", backbone, weights, a, "off", 0)
        first = run(work / "first", backbone, weights, a, "auto", 0)
        reuse = run(work / "reuse", backbone, weights, a, "auto", 1)
        row = {
            "backbone": backbone,
            "uncached_stage_s": plain["stage_s"],
            "cached_first_stage_s": first["stage_s"],
            "cached_reused_stage_s": reuse["stage_s"],
            "speedup_first": plain["stage_s"] / first["stage_s"],
            "speedup_reused": plain["stage_s"] / reuse["stage_s"],
            "test_auc_uncached": plain["test_mean_auc"],
            "test_auc_cached": first["test_mean_auc"],
            "auc_difference": abs(plain["test_mean_auc"] - first["test_mean_auc"]),
        }
        results["rows"].append(row)
        print(json.dumps(row, indent=2), flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
