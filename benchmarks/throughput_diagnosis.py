"""Where medcolor's training fast path loses time (issue 9, item 2): the experiments behind
``benchmarks/results/diagnosis.md``.  Reuses the set-up of ``benchmarks/throughput.py`` (same prepared COVID
images, same medcolor-internal calls), all in one process, variants interleaved in rounds.

    PYTHONPATH=src python benchmarks/throughput_diagnosis.py EXPERIMENT [EXPERIMENT ...] [--size 320]

Experiments:

* ``pieces``   per-sample cost (ms/image, one process, one thread like a DataLoader worker) of each part of
               medcolor's data path: decode vs cache read, crop/resize, seeds, per-sample rotate/zoom,
               normalise, collate; and batched rotate/zoom in the main process;
* ``loader``   images/s of medcolor's training loader for num_workers 0/1/2/3, without/with a built cache,
               rotation/zoom per sample in the workers vs batched in the main process (``augment_on: device``);
* ``train``    medcolor ``train()`` images/s against the bound with single changes: num_workers 0 / 2,
               deterministic off, built cache; and the bound with ``torch.use_deterministic_algorithms``;
* ``overhead`` fixed per-step cost of medcolor's Lightning loop, measured with a tiny input (32 px) where the
               model step is a few ms, and a cProfile of those steps;
* ``compile``  ``torch.compile`` of the bound step vs eager (compile time and step time);
* ``profile``  torch.profiler of two medcolor training steps vs two bound steps: the top operators.

Writes ``benchmarks/results/diagnosis-<machine>.json`` (one key per experiment, merged with earlier runs).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp

MODEL = "pixelshuffle+resnet18"


def ms_per(fn, items, repeat: int = 1) -> float:
    """Median over ``repeat`` passes of the mean ms per item of ``fn(item)``."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        out.append((time.perf_counter() - t0) * 1e3 / len(items))
    return statistics.median(out)


def setup(size: int, tmp: Path, batch: int, **data_overrides: Any):
    data, size = tp.dataset_config("covid", size)
    data = {**data, **data_overrides}
    cfg = tp.medcolor_run_config(data, MODEL, batch=batch, iterations=1, strategy="color-module", out=tmp / "x")
    return data, cfg, tp.medcolor_bundle(cfg)


# ----------------------------------------------------------------------------------------------- pieces
def exp_pieces(args, tmp: Path) -> dict[str, Any]:
    from torch.utils.data import default_collate

    from medcolor.data.readers import load_reduced, to_float
    from medcolor.data.transforms import (
        AugmentConfig,
        BatchRotateZoom,
        TrainTransform,
        random_square_crop,
        resize,
        rotate_zoom,
        sample_rotate_zoom,
    )
    from medcolor.utils import derive_seed

    _, _, bundle = setup(args.size, tmp, 16, cache_dir=str(tmp / "cache"))
    ds = bundle.train
    ds.build_cache(progress=False)
    n = min(len(ds), 128)
    idx = list(range(n))
    paths = [ds._path_strs[i] for i in idx]
    torch.set_num_threads(1)  # as in a DataLoader worker
    res: dict[str, float] = {}
    res["decode file (load_reduced + to_float)"] = ms_per(lambda p: to_float(load_reduced(p, args.size)), paths, 2)
    res["cache read (ImageCache.get + to_float)"] = ms_per(lambda p: to_float(ds.cache.get(p)), paths, 3)
    res["  of which: os.stat + index lookup"] = ms_per(lambda p: ds.cache._hash_for(ds.cache._key(p)), paths, 3)
    imgs = [torch.from_numpy(to_float(ds.cache.get(p)))[None] for p in paths]
    gen = [torch.Generator().manual_seed(i) for i in idx]
    res["random square crop + resize (float32)"] = ms_per(
        lambda i: resize(random_square_crop(imgs[i], gen[i]), args.size), idx, 3
    )
    res["seeds: derive_seed x2 + 2 Generators + draw"] = ms_per(
        lambda i: (
            torch.Generator().manual_seed(derive_seed(i, 0)),
            sample_rotate_zoom(torch.Generator().manual_seed(derive_seed(i, 1))),
        ),
        idx,
        3,
    )
    sq = [resize(random_square_crop(imgs[i], gen[i]), args.size) for i in idx]
    res["rotate/zoom per sample (affine_grid + grid_sample)"] = ms_per(
        lambda i: rotate_zoom(sq[i][None], torch.tensor([5.0]), torch.tensor([1.05])), idx, 3
    )
    res["normalise"] = ms_per(lambda i: (sq[i] - 0.5) / 0.29, idx, 3)
    t_full = TrainTransform(args.size)
    res["TrainTransform (worker path, all of the above)"] = ms_per(lambda i: t_full(imgs[i], i), idx, 3)
    view = bundle.train_view(True, True)
    res["NetworkView[(i, seed)] from the cache (one sample)"] = ms_per(lambda i: view[(i, i)], idx, 3)
    items = [view[(i, i)] for i in idx[:16]]
    res["default_collate of 16 samples, per image"] = ms_per(lambda _: default_collate(items), range(10), 3) / 16
    # batched, main process, all threads
    torch.set_num_threads(args.threads)
    batch = torch.stack(sq[:16])
    brz = BatchRotateZoom(AugmentConfig())
    seeds = torch.arange(16)
    res[f"rotate/zoom batched (BatchRotateZoom, 16 images, {args.threads} threads), per image"] = (
        ms_per(lambda _: brz(batch, seeds), range(5), 3) / 16
    )
    res[f"rotate/zoom batched bf16 ({args.threads} threads), per image"] = (
        ms_per(lambda _: brz(batch.bfloat16(), seeds), range(5), 3) / 16
    )
    # the naive v2 per-sample transform (PIL decode included) for comparison
    torch.set_num_threads(1)
    naive = tp.NaiveFiles(paths, None, args.size, train=True)
    res["naive: PIL open + v2 transforms (one sample)"] = ms_per(lambda i: naive[i], idx, 2)
    torch.set_num_threads(args.threads)
    for k, v in res.items():
        print(f"  {v:8.3f} ms/image  {k}", flush=True)
    return {"ms_per_image": {k: round(v, 4) for k, v in res.items()}, "images": n}


# ----------------------------------------------------------------------------------------------- loader
def exp_loader(args, tmp: Path) -> dict[str, Any]:
    out: dict[str, list[float]] = {}
    variants = []
    for cache in (False, True):
        for aug in ("worker", "device"):
            for nw in (0, 1, 2, 3):
                variants.append((cache, aug, nw))
    bundles = {}
    for cache in (False, True):
        over = {"cache_dir": str(tmp / "cache")} if cache else {}
        _, cfg, bundle = setup(args.size, tmp, args.batch, **over)
        if cache:
            bundle.train.build_cache(progress=False)
        bundles[cache] = (cfg, bundle)
    for r in range(args.rounds):
        print(f"  round {r + 1}, load {tp.load()}", flush=True)
        for cache, aug, nw in variants:
            cfg, bundle = bundles[cache]
            cfg.data.num_workers, cfg.data.augment_on = nw, aug
            m, _ = tp.pipeline(cfg, bundle, "cpu", 2, args.batches)
            key = f"cache={cache} augment_on={aug} num_workers={nw}"
            out.setdefault(key, []).append(m.ips)
            print(f"    {m.ips:8.0f} img/s  {key}", flush=True)
    return {"images_per_s": {k: round(statistics.median(v), 1) for k, v in out.items()}, "runs": out}


# ----------------------------------------------------------------------------------------------- train
def exp_train(args, tmp: Path) -> dict[str, Any]:
    data, cfg, bundle = setup(args.size, tmp, args.batch)
    cache_data = {**data, "cache_dir": str(tmp / "cache")}
    tp.medcolor_bundle(
        tp.medcolor_run_config(cache_data, MODEL, batch=16, iterations=1, strategy="color-module", out=tmp / "x")
    ).train.build_cache(progress=False)
    _, precision, cl = tp.medcolor_resolved("cpu")
    m, kept = tp.pipeline(cfg, bundle, "cpu", 1, 2, keep=2)
    n_labels = len(bundle.label_names)

    def medcolor(data_over: dict[str, Any], trainer_over: dict[str, Any]):
        def run() -> Any:
            out = tmp / "run"
            c = tp.medcolor_run_config(
                {**data, **data_over},
                MODEL,
                batch=args.batch,
                iterations=2 * (args.warmup + args.steps) + 8,
                strategy="color-module",
                out=out,
            )
            for k, v in trainer_over.items():
                setattr(c.trainer, k, v)
            c.trainer.accelerator = "cpu"
            timer = tp.StepTimer(args.warmup, args.steps, "cpu")
            tp.medcolor_fit(c, timer.callback)
            return timer.measure()

        return run

    def bound(deterministic: bool):
        def run() -> Any:
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
            try:
                net = tp.make_model(MODEL, n_labels, "color-module")
                return tp.train_steps(
                    net, tp.repeat_batches(kept, "cpu"), "cpu", precision, cl, args.warmup, args.steps
                )
            finally:
                torch.use_deterministic_algorithms(False)

        return run

    variants = {
        "bound": bound(False),
        "bound + use_deterministic_algorithms(warn_only)": bound(True),
        "medcolor defaults (num_workers 2, deterministic warn)": medcolor({}, {}),
        "medcolor num_workers 0": medcolor({"num_workers": 0}, {}),
        "medcolor deterministic false": medcolor({}, {"deterministic": False}),
        "medcolor num_workers 0 + deterministic false": medcolor({"num_workers": 0}, {"deterministic": False}),
        "medcolor built cache (num_workers 2)": medcolor({"cache_dir": cache_data["cache_dir"]}, {}),
    }
    only = [v for v in args.variants.split(",") if v] if args.variants else None
    res: dict[str, list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        print(f"  round {r + 1}, load {tp.load()}", flush=True)
        for i, (name, fn) in enumerate(variants.items()):
            if only and str(i) not in only:
                continue
            m = fn()
            d = m.to_dict() | {"loadavg": tp.load()}
            res.setdefault(name, []).append(d)
            print(f"    {m.ips:6.2f} img/s  {name}  {d.get('step_times_s', '')}", flush=True)
    summary = {}
    for r in range(args.rounds):
        b = res["bound"][r]["images_per_s"] if "bound" in res else None
        for name, rows in res.items():
            if b:
                summary.setdefault(name, []).append(rows[r]["images_per_s"] / b)
    return {
        "ratio_to_bound": {k: round(statistics.median(v), 3) for k, v in summary.items()},
        "images_per_s": {k: round(statistics.median([x["images_per_s"] for x in v]), 3) for k, v in res.items()},
        "runs": res,
    }


# ----------------------------------------------------------------------------------------------- overhead
def exp_overhead(args, tmp: Path) -> dict[str, Any]:
    """Fixed per-step cost at 32 px (model step of a few ms): medcolor's loop vs the plain loop."""
    size = 32
    data, cfg, bundle = setup(size, tmp, args.batch)
    cache_data = {**data, "cache_dir": str(tmp / "cache32"), "num_workers": 0}
    tp.medcolor_bundle(
        tp.medcolor_run_config(cache_data, MODEL, batch=16, iterations=1, strategy="color-module", out=tmp / "x")
    ).train.build_cache(progress=False)
    _, precision, cl = tp.medcolor_resolved("cpu")
    _, kept = tp.pipeline(cfg, bundle, "cpu", 1, 2, keep=2)
    n_labels = len(bundle.label_names)
    steps, warm = 60, 10
    res: dict[str, Any] = {}
    for r in range(args.rounds):
        net = tp.make_model(MODEL, n_labels, "color-module")
        b = tp.train_steps(net, tp.repeat_batches(kept, "cpu"), "cpu", precision, cl, warm, steps)
        for workers in (0, 2):
            c = tp.medcolor_run_config(
                {**cache_data, "num_workers": workers},
                MODEL,
                batch=args.batch,
                iterations=2 * (warm + steps) + 8,
                strategy="color-module",
                out=tmp / "run",
            )
            c.trainer.accelerator = "cpu"
            timer = tp.StepTimer(warm, steps, "cpu")
            prof = cProfile.Profile() if (r == 0 and workers == 0) else None
            with prof if prof else contextlib.nullcontext():
                tp.medcolor_fit(c, timer.callback)
            m = timer.measure()
            key = f"medcolor (cache, num_workers {workers})"
            res.setdefault(key, []).append(1e3 * m.seconds / steps)
            if prof:
                s = io.StringIO()
                pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
                res["cprofile_tottime_top25"] = s.getvalue()
        res.setdefault("bound", []).append(1e3 * b.seconds / steps)
        print(
            f"  round {r + 1}: bound {res['bound'][-1]:.1f} ms/step, medcolor "
            + ", ".join(f"{k}: {v[-1]:.1f} ms/step" for k, v in res.items() if k.startswith("medcolor")),
            flush=True,
        )
    print(res.get("cprofile_tottime_top25", ""))
    return {
        "size": size,
        "ms_per_step": {k: v for k, v in res.items() if isinstance(v, list)},
        "cprofile": res.get("cprofile_tottime_top25"),
    }


# ----------------------------------------------------------------------------------------------- compile
def exp_compile(args, tmp: Path) -> dict[str, Any]:
    _, cfg, bundle = setup(args.size, tmp, args.batch)
    _, precision, cl = tp.medcolor_resolved("cpu")
    _, kept = tp.pipeline(cfg, bundle, "cpu", 1, 2, keep=2)
    n_labels = len(bundle.label_names)
    res: dict[str, Any] = {}
    eager = tp.make_model(MODEL, n_labels, "color-module")
    compiled_net = tp.make_model(MODEL, n_labels, "color-module")
    compiled = torch.compile(compiled_net)
    t0 = time.perf_counter()
    first = tp.train_steps(compiled, tp.repeat_batches(kept, "cpu"), "cpu", precision, cl, 0, 1)
    res["compile_and_first_step_s"] = round(time.perf_counter() - t0, 1)
    print(f"  compile + first step {res['compile_and_first_step_s']} s ({first.seconds:.1f})", flush=True)
    for r in range(args.rounds):
        e = tp.train_steps(eager, tp.repeat_batches(kept, "cpu"), "cpu", precision, cl, 1, args.steps)
        c = tp.train_steps(compiled, tp.repeat_batches(kept, "cpu"), "cpu", precision, cl, 1, args.steps)
        res.setdefault("eager_images_per_s", []).append(round(e.ips, 3))
        res.setdefault("compiled_images_per_s", []).append(round(c.ips, 3))
        print(f"  round {r + 1}: eager {e.ips:.2f} img/s, compiled {c.ips:.2f} img/s, load {tp.load()}", flush=True)
    res["compiled/eager"] = round(
        statistics.median(
            [c / e for c, e in zip(res["compiled_images_per_s"], res["eager_images_per_s"], strict=True)]
        ),
        3,
    )
    return res


# ----------------------------------------------------------------------------------------------- profile
def exp_profile(args, tmp: Path) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    data, cfg, bundle = setup(args.size, tmp, args.batch)
    _, precision, cl = tp.medcolor_resolved("cpu")
    _, kept = tp.pipeline(cfg, bundle, "cpu", 1, 2, keep=2)
    n_labels = len(bundle.label_names)
    out: dict[str, Any] = {}
    net = tp.make_model(MODEL, n_labels, "color-module")
    tp.train_steps(net, tp.repeat_batches(kept, "cpu"), "cpu", precision, cl, 0, 1)  # warm
    with profile(activities=[ProfilerActivity.CPU]) as p:
        tp.train_steps(net, tp.repeat_batches(kept, "cpu"), "cpu", precision, cl, 0, 2)
    out["bound"] = p.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)

    import lightning.pytorch as pl

    class Prof(pl.Callback):
        def __init__(self) -> None:
            self.p = profile(activities=[ProfilerActivity.CPU])

        def on_train_batch_end(self, trainer, module, outputs, batch, idx):
            if idx == 0:
                self.p.__enter__()
            if idx == 2:
                self.p.__exit__(None, None, None)
                raise tp._Finished

    c = tp.medcolor_run_config(data, MODEL, batch=args.batch, iterations=5, strategy="color-module", out=tmp / "run")
    c.trainer.accelerator = "cpu"
    cb = Prof()
    tp.medcolor_fit(c, cb)
    out["medcolor"] = cb.p.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
    for k, v in out.items():
        print(f"== {k}\n{v}", flush=True)
    return out


EXPERIMENTS = {
    "pieces": exp_pieces,
    "loader": exp_loader,
    "train": exp_train,
    "overhead": exp_overhead,
    "compile": exp_compile,
    "profile": exp_profile,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiments", nargs="+", choices=list(EXPERIMENTS))
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batches", type=int, default=20, help="loader experiment: timed batches")
    ap.add_argument("--variants", default="", help="train experiment: comma-separated variant numbers")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path, default=tp.REPO / "benchmarks" / "results")
    args = ap.parse_args()
    import logging

    import lightning.pytorch  # noqa: F401

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    slug, machine = tp.machine_slug("cpu")
    path = args.out / f"diagnosis-{slug}.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.experiments:
        print(f"== {name} ({machine}, load {tp.load()})", flush=True)
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="medcolor-diag-") as tmp:
            res = EXPERIMENTS[name](args, Path(tmp))
        stored[name] = {
            "result": res,
            "loadavg_end": tp.load(),
            "seconds": round(time.time() - t0, 1),
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "args": {k: str(v) for k, v in vars(args).items()},
            "cpu_count": os.cpu_count(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2, default=float) + "\n")
        print(f"== {name} done in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main()
