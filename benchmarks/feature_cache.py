"""Frozen-E feature cache (issue 19): C trained on cached E features vs the ordinary path, at 224 px on Kermany.

For each backbone (MobileNetV2 and EfficientNet-Lite0 with their real ImageNet weights) the same ``baseline``
stage (E frozen with ``frozen_bn: eval``, augmentation off: the linear-probe protocol) runs three times in ONE
process, on the same images (all 5,216 Kermany training images: 90 % train, 10 % validation, ``--test none``,
so the features of every image are computed) and the same shared image cache:

1. ``uncached``     ``--feature-cache off``: E forward on every image of every step;
2. ``cached-first`` ``--feature-cache auto`` with no features cached yet: E computes the features of the
                    training and validation images once (the *build*), then C trains on them;
3. ``cached-later`` ``--feature-cache auto`` again: the features are read from the cache; ``--later-epochs``
                    epochs, to time the epochs after the first.

A Lightning callback timestamps every training step and every validation pass; the feature build is timed by
wrapping :func:`medcolor.training.features.stage_features`.  An *epoch* is one pass of training steps over the
training images, validation excluded (reported separately).  Runs 1 and 2 have the same length and seed: their
test AUCs must agree (the cache is exact; checked to ``--auc-tolerance``).  With ``--uncached-steps N`` runs 1 and
2 train N steps only and the uncached epoch is extrapolated from their mean step time (say so when quoting).

Speed-ups are ratios within this one process: uncached epoch / cached first pass (build + first epoch) and
uncached epoch / cached later epoch.  The results file records the CPU, the load average before and after every
run and the date.

    PYTHONPATH=src python benchmarks/feature_cache.py                        # full: ~10-30 min on 2 cores
    PYTHONPATH=src python benchmarks/feature_cache.py --subset 64 --size 64 --uncached-steps 3 --later-epochs 2 \
        --out /tmp/fc-smoke                                                  # smoke test (a minute)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
if not (SHARED / "data").is_dir():  # a git worktree next to the main checkout
    SHARED = Path("/work/shared")
BACKBONES = {
    "mobilenet_v2": SHARED / "weights" / "mobilenet_v2-imagenet-features.pth",
    "timm:tf_efficientnet_lite0": SHARED / "weights" / "efficientnet_lite0-imagenet-timm.pth",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    except OSError:
        pass
    names = flags.split()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in names,
        "amx": any(f.startswith("amx") for f in names),
    }


class Timer:
    """Lightning callback: the end time of every training step and the span of every validation pass."""

    def __init__(self) -> None:
        import lightning.pytorch as pl

        outer = self

        class _CB(pl.Callback):
            def on_train_start(self, trainer: Any, pl_module: Any) -> None:
                outer.start = time.perf_counter()

            def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                outer.epoch_starts.append(time.perf_counter())

            def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, i: int) -> None:
                outer.ends.append(time.perf_counter())

            def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
                outer.val.append([time.perf_counter(), 0.0])

            def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
                outer.val[-1][1] = time.perf_counter()

        self.callback = _CB()
        self.start = 0.0
        self.ends: list[float] = []
        self.val: list[list[float]] = []
        self.epoch_starts: list[float] = []

    def epochs(self, steps_per_epoch: int) -> list[float]:
        """Seconds of training steps of each complete epoch (validation passes inside it subtracted)."""
        out, begin = [], self.start
        for k in range(len(self.ends) // steps_per_epoch):
            end = self.ends[(k + 1) * steps_per_epoch - 1]
            inside = sum(b - a for a, b in self.val if begin <= a and b <= end)
            out.append(end - begin - inside)
            begin = end
        return out

    def steps(self) -> list[float]:
        """Seconds of each training step but the first of each chunk (Lightning epoch): steps with a validation
        pass, a checkpoint or a loader start between them are left out."""
        marks = [v0 for v0, _ in self.val] + self.epoch_starts
        return [b - a for a, b in zip(self.ends, self.ends[1:], strict=False) if not any(a <= m <= b for m in marks)]

    def validation(self) -> list[float]:
        return [b - a for a, b in self.val]


class BuildTimer:
    """Times :func:`medcolor.training.features.stage_features` (the feature build or read) while installed."""

    def __enter__(self) -> BuildTimer:
        import medcolor.training.features as features

        self.module, self.original = features, features.stage_features
        self.seconds: list[float] = []
        self.refusals: list[str | None] = []  # None: the cache was used

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            got = self.original(*args, **kwargs)
            self.seconds.append(time.perf_counter() - t0)
            self.refusals.append(got if isinstance(got, str) else None)
            self.images = None if isinstance(got, str) else (len(got[0]), len(got[1]))  # training, validation
            return got

        features.stage_features = timed
        return self

    def __exit__(self, *exc: object) -> None:
        self.module.stage_features = self.original


def run(
    out: Path, backbone: str, a: argparse.Namespace, cache: str, length: list[str], test: bool = True
) -> dict[str, Any]:
    """One ``medcolor train`` run (the CLI's own config) with the timers; its times and test AUC."""
    from medcolor.cli.parser import build_parser, config_from_args
    from medcolor.training import train

    weights = BACKBONES[backbone]
    data = getattr(a, "data_args", None) or [
        "--dataset",
        "folder",
        "--root",
        str(a.root),
        "--option",
        "patient_regex=kermany",
    ]
    args = [
        "train",
        *data,
        "--val",
        "0.1",
        "--test",
        "none",
        "--backbone",
        backbone,
        "--weights",
        str(weights) if weights.is_file() or not getattr(a, "random_weights_if_missing", False) else "none",
        "--stages",
        "baseline",
        "--frozen-bn",
        "eval",
        "--no-augment",
        "--lr",
        "0.02",
        "--size",
        str(a.size),
        "--batch-size",
        str(a.batch_size),
        "--cache-dir",
        str(a.cache_dir),
        "--feature-cache",
        cache,
        "--seed",
        "0",
        "--no-progress",
        "--bootstrap",
        "0",
        "--precision",
        a.precision,
        "--output",
        str(out),
        "--overwrite",
        *length,
    ]
    if a.subset:
        args += ["--subset", str(a.subset)]
    cfg = config_from_args(build_parser().parse_args(args))
    timer = Timer()
    load0, t0 = loadavg(), time.perf_counter()
    with BuildTimer() as build:
        result = train(cfg, overwrite=True, evaluate_test=test, callbacks=[timer.callback])
    total = time.perf_counter() - t0
    stage = result.stages[0]
    return {
        "args": args,
        "total_s": round(total, 2),
        "stage_s": stage.time_s,
        "steps": stage.total_steps,
        "feature_s": round(build.seconds[0], 2) if build.seconds else None,
        "timer": timer,
        "test_mean_auc": result.test["mean_auc"] if result.test else None,
        "load_before": load0,
        "load_after": loadavg(),
        "cache_used": bool(build.refusals) and build.refusals[0] is None,
        "refusal": build.refusals[0] if build.refusals else "trainer.feature_cache is off",
        "images": getattr(build, "images", None),
    }


def drop_features(cache_dir: Path) -> None:
    for p in cache_dir.glob("*-features-*"):
        p.unlink()


def bench_backbone(backbone: str, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    from math import ceil

    drop_features(a.cache_dir)
    n = a.uncached_steps
    length = ["--iterations", str(n)] if n else ["--epochs", "1"]
    log(f"{backbone}: uncached ({f'{n} steps' if n else '1 epoch'})")
    plain = run(work / "plain", backbone, a, "off", length)
    log(f"{backbone}: cached, first pass (feature build)")
    first = run(work / "first", backbone, a, "auto", length)
    log(f"{backbone}: cached, later epochs")
    later = run(work / "later", backbone, a, "auto", ["--epochs", str(a.later_epochs)], test=False)
    if not (first["cache_used"] and later["cache_used"]) or plain["cache_used"]:
        raise SystemExit(f"{backbone}: the feature cache was not used where expected: {first['refusal']}")
    spe = ceil(later["steps"] / a.later_epochs)  # training steps per epoch
    # an epoch of training steps = mean step time x steps per epoch, the same rule for all three runs (steps
    # with a loader start, a validation pass or a checkpoint between them are left out: see Timer.steps)
    uncached_epoch = statistics.fmean(plain["timer"].steps()) * spe
    cached_first_epoch = statistics.fmean(first["timer"].steps()) * spe
    cached_later = statistics.fmean(later["timer"].steps()) * spe
    # wall time of whole epochs (with the loader start and the checkpoint, validation subtracted), where complete
    walls = {k: [round(x, 3) for x in r["timer"].epochs(spe)] for k, r in (("uncached", plain), ("later", later))}
    first_pass = first["feature_s"] + cached_first_epoch
    diff = abs(plain["test_mean_auc"] - first["test_mean_auc"])
    row = {
        "backbone": backbone,
        "train_val_images": later["images"],
        "steps_per_epoch": spe,
        "uncached_epoch_s": round(uncached_epoch, 2),
        "uncached_epoch_extrapolated_from_steps": n or None,
        "uncached_validation_s": round(statistics.fmean(plain["timer"].validation()), 2),
        "feature_build_s": first["feature_s"],
        "cached_first_epoch_steps_s": round(cached_first_epoch, 3),
        "cached_first_pass_s": round(first_pass, 2),
        "cached_later_epoch_s": round(cached_later, 3),
        "epoch_wall_s": walls,
        "cached_validation_s": round(statistics.fmean(later["timer"].validation()), 3),
        "feature_read_s": later["feature_s"],
        "speedup_first_pass": round(uncached_epoch / first_pass, 3),
        "speedup_later_epochs": round(uncached_epoch / cached_later, 1),
        "test_auc_uncached": plain["test_mean_auc"],
        "test_auc_cached": first["test_mean_auc"],
        "auc_difference": diff,
        "auc_agree": diff <= a.auc_tolerance,
        "load": {
            k: [r["load_before"], r["load_after"]] for k, r in (("uncached", plain), ("first", first), ("later", later))
        },
        "run_total_s": {"uncached": plain["total_s"], "first": first["total_s"], "later": later["total_s"]},
    }
    log(json.dumps(row))
    return row


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# Frozen-E feature cache: speed-up at {size} px on Kermany (`benchmarks/feature_cache.py`)".format(**res),
        "",
        f"- Date: {res['date']}; CPU: {m['cpu']}, {m['cores']} cores, avx512_bf16 {m['avx512_bf16']}, AMX {m['amx']};"
        f" torch threads {res['torch_threads']}; precision {res['precision']}; batch {res['batch_size']}.",
        f"- Load average (1/5/15 min) at start {res['load_start']}, at end {res['load_end']}"
        f"{' (LOADED: the machine was shared with other jobs)' if res['load_start'][0] > 1.5 else ''}.",
        f"- Images: {res['root']} ({res['images']}), 90 % train / 10 % validation, `--test none` (test = validation);"
        " `baseline` stage, `--frozen-bn eval`, `--no-augment`, seed 0.",
        "- Epoch = mean training-step time x steps per epoch (one pass over the training images; validation, loader"
        " start and checkpoint excluded, given below). Ratios are taken within this one process.",
        "",
        "| backbone | uncached epoch (s) | cached first pass: build + epoch (s) | cached later epoch (s) |"
        " speed-up first pass | speed-up later epochs | test AUC uncached | cached | abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        ext = (
            f" (extrapolated from {r['uncached_epoch_extrapolated_from_steps']} steps)"
            if r["uncached_epoch_extrapolated_from_steps"]
            else ""
        )
        lines.append(
            f"| {r['backbone']} | {r['uncached_epoch_s']:.1f}{ext} | {r['feature_build_s']:.1f} + "
            f"{r['cached_first_epoch_steps_s']:.2f} = {r['cached_first_pass_s']:.1f} | "
            f"{r['cached_later_epoch_s']:.2f} | "
            f"{r['speedup_first_pass']:.2f}x | {r['speedup_later_epochs']:.0f}x | {r['test_auc_uncached']:.7f} | "
            f"{r['test_auc_cached']:.7f} | {r['auc_difference']:.1e} |"
        )
    lines += [
        "",
        "Wall time of complete epochs (s, with loader start and checkpoint, validation subtracted): "
        + "; ".join(f"{r['backbone']} {r['epoch_wall_s']}" for r in res["rows"]),
        "",
        "Validation pass (s): "
        + "; ".join(
            f"{r['backbone']} uncached {r['uncached_validation_s']}, cached {r['cached_validation_s']}"
            for r in res["rows"]
        ),
        "",
        "The first pass costs about one uncached epoch (E's forward over every training and validation image once,"
        " no backward through the frozen E either way); every later epoch, stage, seed or study cell with the same"
        " E, T, size and normalisation reads the features back. Raw figures: the `.json` beside this file.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=SHARED / "data" / "kermany-pneumonia-224" / "train")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precision", default="auto", help="trainer.precision of all runs (default: auto)")
    ap.add_argument("--subset", type=int, help="training images (default: all)")
    ap.add_argument("--uncached-steps", type=int, help="time this many steps uncached and extrapolate an epoch")
    ap.add_argument("--later-epochs", type=int, default=3, help="epochs of the cached-later run")
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    ap.add_argument("--cache-dir", type=Path, help="image + feature cache (default: a fresh temporary folder)")
    ap.add_argument("--auc-tolerance", type=float, default=1e-4)
    ap.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results" / "feature_cache",
        help="results: OUT.json and OUT.md",
    )
    a = ap.parse_args()
    import torch

    tmp_cache = a.cache_dir is None
    a.cache_dir = a.cache_dir or Path(tempfile.mkdtemp(prefix="medcolor-bench-cache-"))
    work = Path(tempfile.mkdtemp(prefix="medcolor-bench-fc-"))
    res: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": cpu_info(),
        "torch_threads": torch.get_num_threads(),
        "root": str(a.root),
        "images": sum(1 for p in a.root.rglob("*") if p.is_file() and p.suffix.lower() in (".jpeg", ".jpg", ".png")),
        "size": a.size,
        "batch_size": a.batch_size,
        "subset": a.subset,
        "load_start": loadavg(),
        "rows": [],
    }
    from medcolor.training import resolve_precision

    res["precision"] = resolve_precision(a.precision, "cpu") if a.precision == "auto" else a.precision
    a.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for backbone in a.backbones:
            res["rows"].append(bench_backbone(backbone, a, work / backbone.replace(":", "_")))
            res["load_end"] = loadavg()
            a.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")  # after every backbone
            a.out.with_suffix(".md").write_text(markdown(res))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if tmp_cache:
            shutil.rmtree(a.cache_dir, ignore_errors=True)
    print(markdown(res))
    if not all(r["auc_agree"] for r in res["rows"]):
        raise SystemExit(f"cached and uncached test AUCs differ by more than {a.auc_tolerance}")


if __name__ == "__main__":
    main()
