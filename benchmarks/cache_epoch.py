"""One epoch of image loading, decoded directly vs. from the memory-mapped ImageCache.

The 648 distinct images of the COVID-19 chest X-ray collection (mixed JPEG/PNG, RGB/RGBA/L/P, up to
1024 px) are loaded once each with ``load_image`` at ``load_size=320`` in a single process: first by
decoding + reducing every file, then from a cache built beforehand.  Writes a markdown table to
``benchmarks/results/cache_epoch.md``.

    python benchmarks/cache_epoch.py [--data ../shared/data/covid-chestxray] [--size 320] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import PIL

from medcolor.data import CsvDataset, ImageCache
from medcolor.utils import write_text_atomic

REPO = Path(__file__).resolve().parents[1]


def epoch(ds: CsvDataset) -> float:
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds.load_image(i)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "covid-chestxray")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cache_epoch.md")
    args = ap.parse_args()

    def dataset(**kw) -> CsvDataset:
        ds = CsvDataset(
            args.data / "images",
            args.data / "metadata.csv",
            path_column="filename",
            category_column="finding",
            positive=["COVID-19"],
            separator=",",
            ignore=["todo"],
            patient_column="patientid",
            **kw,
        )
        first = np.unique(np.asarray([str(p) for p in ds.paths]), return_index=True)[1]
        return ds.subset(np.sort(first))  # each of the 648 files once

    direct = dataset(load_size=args.size)
    n = len(direct)
    with tempfile.TemporaryDirectory() as tmp:
        epoch(direct)  # warm the OS file cache so both runs read from memory
        t_direct = [epoch(direct) for _ in range(args.repeats)]

        cache = ImageCache(Path(tmp) / "cache", args.size, name="covid")
        t0 = time.perf_counter()
        report = cache.build(direct.paths, progress=False, workers=0)
        t_build = time.perf_counter() - t0
        cache2 = ImageCache(Path(tmp) / "cache2", args.size, name="covid")
        t0 = time.perf_counter()
        cache2.build(direct.paths, progress=False, workers=os.cpu_count() or 1)
        t_build_par = time.perf_counter() - t0
        size_mb = (os.path.getsize(cache.data_path) + os.path.getsize(cache.index_path)) / 2**20

        cached = dataset(cache=ImageCache(Path(tmp) / "cache", args.size, name="covid"))  # fresh object
        t_cached = [epoch(cached) for _ in range(args.repeats)]
        assert cached.cache_misses == 0
        same = all(np.array_equal(direct.load_image(i), cached.load_image(i)) for i in range(0, n, 9))

    d, c = statistics.median(t_direct), statistics.median(t_cached)
    rows = [
        ("images per epoch", f"{n}"),
        ("direct decoding (decode + reduce), images/s", f"{n / d:,.0f}  ({d:.2f} s/epoch)"),
        ("from the cache, images/s", f"{n / c:,.0f}  ({c:.3f} s/epoch)"),
        ("speedup", f"{d / c:,.0f}x"),
        (
            "cache build, 1 process",
            f"{t_build:.1f} s ({report['decoded']} decoded, {report['deduplicated']} duplicate content)",
        ),
        (f"cache build, {os.cpu_count()} worker processes", f"{t_build_par:.1f} s"),
        ("cache size (data + index)", f"{size_mb:.1f} MB"),
        ("cached == direct (every 9th image, np.array_equal)", str(same)),
    ]
    machine = (
        f"{platform.machine()} CPU, {os.cpu_count()} cores ({platform.processor() or 'unknown model'}), "
        f"Linux {platform.release()}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"Pillow {PIL.__version__}"
    )
    text = "\n".join(
        [
            "# Cache benchmark: one epoch of `load_image` over the COVID-19 collection",
            "",
            f"`python benchmarks/cache_epoch.py` — load_size={args.size} (short side), "
            f"single process, median of {args.repeats} epochs after a warm-up epoch (files in the OS cache).",
            "",
            "| measure | value |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in rows],
            "",
            f"Machine: {machine}.",
            "",
            "Direct epochs (s): "
            + ", ".join(f"{t:.2f}" for t in t_direct)
            + "; cached epochs (s): "
            + ", ".join(f"{t:.3f}" for t in t_cached)
            + ".",
            "",
        ]
    )
    print(text)
    write_text_atomic(args.out, text)


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main()
