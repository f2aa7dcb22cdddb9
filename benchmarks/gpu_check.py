"""GPU check (issue 19): the training, predict and feature-cache benchmarks on one CUDA GPU, in under 8 minutes.

Runs, in one process, on the GPU:

1. ``throughput``  — :func:`throughput.run_case` for ``colorU+mobilenet_v2`` (color-module stage): train step bound
                     (in-memory batches) vs ``medcolor.training.train()`` vs a naive torchvision loop; the input
                     pipeline (uint8 vs float32 batches, decoded and from the image cache); inference bound vs
                     ``predict_files`` (default precision and 32-true) vs a naive predict loop;
2. ``feature_cache`` — :func:`feature_cache.bench_backbone` for MobileNetV2, then EfficientNet-Lite0 if time is
                     left: uncached epoch vs cached first pass (feature build) vs later epochs, and the cached /
                     uncached test AUC agreement (1e-4).

Data: Kermany (``$MEDCOLOR_SHARED`` or ``../shared``, all 5,216 training images at 224 px) where it is there, else
medcolor's synthetic set (generated, 224 px); E's weights: the shared ImageNet files, else random (timings only;
said in the results).  Each part records its wall time, and a part that fails is recorded with its error while the
others still run.  Results: ``gpu_check-<gpu>.json`` and ``.md`` under ``--out`` (``$OUT`` when set, else
``benchmarks/results``).

``--dry``: the same code on the CPU with tiny sizes (32 px, a few steps, 48 synthetic images, MobileNetV2 only for
the feature cache), no time limit: 2-3 minutes on an idle 2-core CPU, ~10 on a heavily shared one.

    benchmarks/gpu_check.sh            # on the GPU machine (calls this file)
    benchmarks/gpu_check.sh --dry      # CPU smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import feature_cache as fc  # noqa: E402 - the sibling benchmark scripts
import throughput as tp  # noqa: E402

BUDGET_S = 450  # the parts start only while the check is within this many seconds (the whole must stay < 8 min)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def kermany_root() -> Path | None:
    shared = Path(os.environ.get("MEDCOLOR_SHARED", "")) if os.environ.get("MEDCOLOR_SHARED") else tp.SHARED
    root = shared / "data" / "kermany-pneumonia-224" / "train"
    return root if root.is_dir() else None


def settings(dry: bool) -> dict[str, Any]:
    """Sizes of the parts: the real check, or the tiny CPU one."""
    if dry:
        return {"size": 32, "batch": 8, "steps": 1, "warmup": 1, "infer": 8, "pipe": 2, "n_synth": 48, "later": 2}
    return {"size": 224, "batch": 64, "steps": 30, "warmup": 5, "infer": 1024, "pipe": 100, "n_synth": 2000, "later": 3}


def part_throughput(dry: bool, device: str, dataset: str, tmp: Path) -> dict[str, Any]:
    s = settings(dry)
    args = SimpleNamespace(
        device=device,
        batch_size=s["batch"],
        steps=s["steps"],
        warmup=s["warmup"],
        rounds=1,
        infer_images=s["infer"],
        pipeline_batches=s["pipe"],
        strategy="color-module",
        size=s["size"],
        pipeline_only=False,
    )
    case_dir = tmp / "throughput"
    case_dir.mkdir()
    return tp.run_case(args, dataset, "colorU+mobilenet_v2", case_dir)


def part_feature_cache(dry: bool, backbone: str, data_args: list[str], tmp: Path, precision: str) -> dict[str, Any]:
    s = settings(dry)
    a = SimpleNamespace(
        root=None,
        size=s["size"],
        batch_size=s["batch"],
        precision=precision,
        subset=None,
        uncached_steps=2 if dry else None,  # the real check times a whole uncached epoch
        later_epochs=s["later"],
        cache_dir=tmp / f"cache-{backbone.replace(':', '_')}",
        auc_tolerance=1e-4,
        data_args=data_args,
        random_weights_if_missing=True,
    )
    a.cache_dir.mkdir()
    row = fc.bench_backbone(backbone, a, tmp / f"fc-{backbone.replace(':', '_')}")
    row["weights"] = "imagenet file" if fc.BACKBONES[backbone].is_file() else "random (file absent)"
    return row


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"# GPU check ({'DRY RUN on the CPU, tiny sizes: not GPU figures' if res['dry'] else res['device_name']})",
        "",
        f"- Date {res['date']}; {res['device_name']}; torch {res['torch']}; CPU {res['cpu']} ({res['cores']} cores);"
        f" load average {res['load_start']} -> {res['load_end']}; data: {res['data']}; total {res['seconds']:.0f} s.",
        "",
        "| part | variant | images/s | note |",
        "|---|---|---:|---|",
    ]
    tpc = res["parts"].get("throughput", {})
    for key, _mode, variant, rn, rb in tp.ROWS:
        if key in tpc.get("images_per_s", {}):
            note = "; ".join(f"{k} {tpc['ratios'][k]:.2f}x" for k in (rn, rb) if k and k in tpc.get("ratios", {}))
            lines.append(f"| throughput | {variant} | {tpc['images_per_s'][key]:,.1f} | {note} |")
    for name, part in res["parts"].items():
        if name.startswith("feature_cache") and "uncached_epoch_s" in part:
            lines.append(
                f"| {name} | uncached epoch {part['uncached_epoch_s']:.2f} s; first pass (build + epoch) "
                f"{part['cached_first_pass_s']:.2f} s; later epoch {part['cached_later_epoch_s']:.3f} s | | speed-up "
                f"first {part['speedup_first_pass']:.2f}x, later {part['speedup_later_epochs']:.0f}x; test AUC "
                f"{part['test_auc_uncached']:.6f} vs {part['test_auc_cached']:.6f} ({part['weights']}) |"
            )
    for name, part in res["parts"].items():
        if "error" in part:
            lines.append(f"| {name} | FAILED | | {part['error'].splitlines()[-1][:200]} |")
    lines += ["", "Part wall times (s): " + ", ".join(f"{k} {v}" for k, v in res["part_seconds"].items()), ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry", action="store_true", help="CPU, tiny sizes: a smoke run of the same code")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or HERE / "results"))
    ap.add_argument(
        "--parts", nargs="+", default=["throughput", "feature_cache"], choices=["throughput", "feature_cache"]
    )
    a = ap.parse_args()
    import torch

    t0 = time.perf_counter()
    if a.dry:
        device = "cpu"
    elif not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU is visible (torch.cuda.is_available() is False); use --dry on a CPU",
            file=sys.stderr,
        )
        return 2
    else:
        device = "cuda"
    import logging

    import lightning.pytorch  # noqa: F401 - quieten Lightning's loggers after its import sets them

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    s = settings(a.dry)
    root = None if a.dry else kermany_root()
    if root is not None:
        dataset = "kermany"
        data_args = ["--dataset", "folder", "--root", str(root), "--option", "patient_regex=kermany"]
    else:
        dataset = f"synthetic:{s['n_synth']}"
        synth = tp.dataset_config(dataset, s["size"])[0]
        data_args = ["--dataset", "synthetic", "--root", synth["root"]]
        data_args += ["--option", f"n={s['n_synth']}", "--option", f"image_size={s['size']}"]
    cpu = fc.cpu_info()
    res: dict[str, Any] = {
        "dry": a.dry,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({cpu['cpu']})",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu["cpu"],
        "cores": cpu["cores"],
        "load_start": fc.loadavg(),
        "data": f"{dataset} ({root})" if root else f"{dataset} (generated, {s['size']} px)",
        "parts": {},
        "part_seconds": {},
    }
    from medcolor.training import resolve_precision

    precision = resolve_precision("auto", device)
    res["precision"] = precision
    jobs: list[tuple[str, Any]] = []
    if "throughput" in a.parts:
        jobs.append(("throughput", lambda tmp: part_throughput(a.dry, device, dataset, tmp)))
    if "feature_cache" in a.parts:
        for backbone in list(fc.BACKBONES)[: 1 if a.dry else None]:  # dry: MobileNetV2 only
            jobs.append(
                (
                    f"feature_cache {backbone}",
                    lambda tmp, b=backbone: part_feature_cache(a.dry, b, data_args, tmp, precision),
                )
            )
    a.out.mkdir(parents=True, exist_ok=True)
    slug = "dry-cpu" if a.dry else re.sub(r"[^a-z0-9]+", "-", res["device_name"].lower()).strip("-")
    with tempfile.TemporaryDirectory(prefix="medcolor-gpu-check-") as tmp:
        for name, job in jobs:
            if not a.dry and time.perf_counter() - t0 > BUDGET_S:  # a dry run on a shared CPU has no budget
                res["parts"][name] = {"error": f"skipped: the check had run {BUDGET_S} s (its budget)"}
                continue
            log(f"{name} ...")
            t = time.perf_counter()
            work = Path(tmp) / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
            work.mkdir()
            try:
                res["parts"][name] = job(work)
            except (Exception, SystemExit) as exc:  # record it, run the other parts
                res["parts"][name] = {"error": "".join(traceback.format_exception(exc))}
                log(f"{name} FAILED: {exc!r}")
            res["part_seconds"][name] = round(time.perf_counter() - t, 1)
            res["load_end"], res["seconds"] = fc.loadavg(), round(time.perf_counter() - t0, 1)
            (a.out / f"gpu_check-{slug}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
            (a.out / f"gpu_check-{slug}.md").write_text(markdown(res))
        res["load_end"], res["seconds"] = fc.loadavg(), round(time.perf_counter() - t0, 1)
        (a.out / f"gpu_check-{slug}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        (a.out / f"gpu_check-{slug}.md").write_text(markdown(res))
    print(markdown(res))
    log(f"written {a.out / f'gpu_check-{slug}.json'} and .md in {res['seconds']:.0f} s")
    return 1 if any("error" in p for p in res["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
