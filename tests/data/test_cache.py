"""ImageCache: bit-identical to direct decoding, resumable, per-file invalidation, DataLoader workers."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import medcolor.data.cache as cache_mod
import medcolor.data.datasets.base as dataset_base
from medcolor.data import CsvDataset, ImageCache, load_reduced, to_float
from medcolor.errors import ConfigError


def _covid_subset(covid, n_per_mode: int = 2):
    """A few real COVID files of each colour mode (L JPEG, RGB / RGBA / P PNG)."""
    picked: dict[str, list[int]] = {}
    seen: set[str] = set()
    for i, p in enumerate(covid.paths):
        if str(p) in seen:
            continue
        with Image.open(p) as im:
            mode = im.mode
        if len(picked.setdefault(mode, [])) < n_per_mode:
            picked[mode].append(i)
            seen.add(str(p))
    assert {"L", "RGB", "RGBA", "P"} <= set(picked)
    return covid.subset(sorted(i for v in picked.values() for i in v))


@pytest.fixture
def mixed_dir(tmp_path: Path, covid) -> Path:
    """Copies of real COVID files plus a 16-bit PNG, in tmp_path/img with a labels.csv."""
    sub = _covid_subset(covid)
    img = tmp_path / "img"
    img.mkdir()
    names = []
    for p in sub.paths:
        shutil.copy(p, img / p.name)
        names.append(p.name)
    rng = np.random.default_rng(0)
    arr16 = (rng.random((300, 200)) * 65535).astype(np.uint16)
    Image.fromarray(arr16).save(img / "sixteen.png")
    names.append("sixteen.png")
    (tmp_path / "labels.csv").write_text("path,y,pid\n" + "".join(f"img/{n},1,p{k}\n" for k, n in enumerate(names)))
    return tmp_path


def _dataset(root: Path, **kw) -> CsvDataset:
    return CsvDataset(root, root / "labels.csv", label_columns=["y"], patient_column="pid", **kw)


def test_cache_bit_identical_to_direct_decoding(mixed_dir: Path, tmp_path: Path) -> None:
    direct = _dataset(mixed_dir, load_size=96)
    cached = _dataset(mixed_dir, load_size=96)
    cache = cached.build_cache(tmp_path / "cache", progress=False, workers=0)
    assert len(cache) == len(cached) and cache.last_report["decoded"] == len(cached)
    for i in range(len(direct)):
        a, b = direct.load_image(i), cached.load_image(i)
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b), cached.paths[i].name
        assert min(a.shape) == 96
    assert cached.cache_misses == 0
    sixteen = cache.get(mixed_dir / "img" / "sixteen.png")
    assert sixteen.dtype == np.uint16 and sixteen.shape == (144, 96)  # 16-bit kept
    assert len(np.unique(sixteen)) > 256
    jpg = next(p for p in cached.paths if p.suffix.lower() in (".jpg", ".jpeg"))
    assert cache.get(jpg).dtype == np.uint8
    assert np.array_equal(to_float(cache.get(jpg)), to_float(load_reduced(jpg, 96)))
    # a second cache object on the same directory (another process) reads the same
    again = ImageCache(tmp_path / "cache", 96, name="csv")
    assert len(again) == len(cached) and np.array_equal(again.get(jpg), cache.get(jpg))
    assert (mixed_dir / "img" / "nope.png") not in again and again.get(mixed_dir / "nope.png") is None


def test_cache_with_two_workers_and_sizes(mixed_dir: Path, tmp_path: Path) -> None:
    ds = _dataset(mixed_dir, load_size=48)
    ds.build_cache(tmp_path / "c", progress=False, workers=2)
    other = ImageCache(tmp_path / "c", 64, name="csv")  # another size lives beside it
    assert len(other) == 0 and other.data_path != ds.cache.data_path
    with pytest.raises(ConfigError, match="64 px but load_size is 48"):
        _dataset(mixed_dir, load_size=48, cache=other)
    by_path = _dataset(mixed_dir, cache=tmp_path / "c", load_size=48)  # a directory path works too
    assert by_path.cache is not None and len(by_path.cache) == len(ds)
    adopt = _dataset(mixed_dir, cache=ds.cache)  # load_size taken from the cache
    assert adopt.load_size == 48 and np.array_equal(adopt.load_image(0), ds.load_image(0))


def test_resume_after_interruption(mixed_dir: Path, tmp_path: Path, monkeypatch) -> None:
    ds = _dataset(mixed_dir, load_size=64)
    paths = [str(p) for p in ds.paths]
    n = len(paths)
    cache = ImageCache(tmp_path / "cache", 64, name="csv")
    half = n // 2
    cache.build(paths[:half], progress=False, workers=0)
    assert len(cache) == half

    # a build of everything that dies (Ctrl-C) after two more images
    real = cache_mod._decode_for_cache
    calls = {"n": 0}

    def dying(job):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(cache_mod, "_decode_for_cache", dying)
    with pytest.raises(KeyboardInterrupt):
        cache.build(paths, progress=False, workers=0)
    monkeypatch.setattr(cache_mod, "_decode_for_cache", real)
    reopened = ImageCache(tmp_path / "cache", 64, name="csv")
    assert len(reopened) == half + 2  # entries written before the interruption are kept
    # junk after the last flush (a kill mid-write) is dropped by the next build
    with open(reopened.data_path, "ab") as f:
        f.write(b"\xff" * 1000)
    before = [reopened.get(p) for p in paths[: half + 2]]

    decoded: list[str] = []

    def counting(job):
        decoded.append(job[0])
        return real(job)

    monkeypatch.setattr(cache_mod, "_decode_for_cache", counting)
    report = reopened.build(paths, progress=False, workers=0)
    assert report["reused"] == half + 2 and report["decoded"] == n - half - 2
    assert sorted(decoded) == sorted(paths[half + 2 :])  # nothing decoded twice
    assert len(reopened) == n and os.path.getsize(reopened.data_path) == reopened.nbytes
    for p, b in zip(paths[: half + 2], before, strict=True):
        assert np.array_equal(reopened.get(p), b)
    for i, p in enumerate(paths):
        assert np.array_equal(to_float(reopened.get(p)), ds.load_image(i))


def test_changed_file_invalidates_only_its_entry(tmp_path: Path) -> None:
    src = tmp_path / "img"
    src.mkdir()
    rng = np.random.default_rng(0)
    files = []
    for k in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(src / f"{k}.png")
        files.append(src / f"{k}.png")
    cache = ImageCache(tmp_path / "cache", 32)
    with pytest.warns(UserWarning, match=r"gone\.png"):  # a missing file is reported
        cache.build([*files, src / "gone.png"], progress=False, workers=0)
    assert cache.last_report["failed"] and len(cache) == 4
    originals = [cache.get(f) for f in files]

    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(files[1])  # new content
    os.utime(files[2], ns=(1_000_000_000, 1_000_000_000))  # touched, same content
    fresh = ImageCache(tmp_path / "cache", 32)
    assert fresh.get(files[1]) is None and files[1] not in fresh
    assert np.array_equal(fresh.get(files[2]), originals[2])  # re-hashed: same content, still valid
    assert np.array_equal(fresh.get(files[0]), originals[0]) and np.array_equal(fresh.get(files[3]), originals[3])
    (src / "new.png").write_bytes(files[0].read_bytes())
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(src / "added.png")
    assert fresh.get(src / "added.png") is None  # an added file just is not there yet
    assert np.array_equal(fresh.get(src / "new.png"), originals[0])  # known content under a new name
    report = fresh.build([*files, src / "added.png"], progress=False, workers=0)
    assert report["decoded"] == 2 and report["reused"] == 3
    assert np.array_equal(fresh.get(files[1]), load_reduced(files[1], 32))


def test_corrupt_file_in_build_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"junk" * 20)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")
    cache = ImageCache(tmp_path / "c", 8)
    with pytest.warns(UserWarning, match=r"1 image\(s\) could not be read.*bad\.png"):
        report = cache.build([tmp_path / "bad.png", tmp_path / "ok.png"], progress=False, workers=0)
    assert len(report["failed"]) == 1 and len(cache) == 1


def test_cache_through_dataloader_workers(mixed_dir: Path, tmp_path: Path, monkeypatch) -> None:
    ds = _dataset(mixed_dir, load_size=40)
    direct = _dataset(mixed_dir, load_size=40)
    expected = [direct.load_image(i) for i in range(len(direct))]
    cache = ds.build_cache(tmp_path / "cache", progress=False, workers=0)
    ds.cache.get(ds.paths[0])  # the map is open in this process...
    assert len(pickle.dumps(cache)) < 1000  # ...but pickling carries settings only

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached image was decoded")

    monkeypatch.setattr(dataset_base, "load_reduced", no_decoding)  # inherited by the forked workers
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = list(loader)
    assert [it["index"] for it in items] == list(range(len(ds)))
    for it in items:
        assert torch.equal(it["image"][0], torch.from_numpy(expected[it["index"]]))


def test_build_waits_for_another_builder_when_asked(mixed_dir: Path, tmp_path: Path) -> None:
    import fcntl
    import threading

    ds = _dataset(mixed_dir, load_size=40)
    cache = ImageCache(tmp_path / "cache", 40, name=ds.name)
    cache.lock_path.parent.mkdir(parents=True)
    with open(cache.lock_path, "a+") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # another builder (another open file) holds the lock
        with pytest.raises(Exception, match="another process is building the cache"):
            cache.build(ds.paths, progress=False, workers=0)
        threading.Timer(0.3, lambda: fcntl.flock(holder.fileno(), fcntl.LOCK_UN)).start()
        report = cache.build(ds.paths, progress=False, workers=0, wait=True)
    assert report["decoded"] == len(ds) and not report["failed"]


def test_a_run_with_a_cache_dir_fills_it_with_its_own_images_once(tmp_path: Path, shared_path, caplog) -> None:
    """data.cache_dir: build_data decodes the run's train/val/test images into the cache (and no others); a
    second run decodes nothing and loads bit-identical images without decoding."""
    import logging

    from medcolor.config import DataConfig
    from medcolor.data.bundle import build_data

    cfg = DataConfig(
        dataset="folder",
        root=str(shared_path("data", "kermany-pneumonia-224")),
        train_split="train",
        options={"patient_regex": "kermany"},
        val=0.1,
        test=0.1,
        subset=24,
        size=32,
        num_workers=0,
    )
    plain = build_data(cfg)
    cfg.cache_dir = str(tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="medcolor.data.bundle"):
        cached = build_data(cfg)
    used = [*cached.train.paths, *cached.val.paths, *cached.test.paths]
    n = len(used)
    made = re.search(rf"0 of {n} images there already, (\d+) decoded, (\d+) identical to another", caplog.text)
    assert made and int(made[1]) + int(made[2]) == n and int(made[1]) > 0.99 * n
    assert len(cached.train.cache) == int(made[1]) < 5216  # the run's distinct images, not the whole folder
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="medcolor.data.bundle"):
        again = build_data(cfg)
    assert f"{n} of {n} images there already, 0 decoded, 0 identical" in caplog.text
    for i in (0, len(again.val) - 1):
        assert np.array_equal(again.val.load_image(i), plain.val.load_image(i))
    assert again.val.cache_misses == 0 and again.train.cache is not None


def test_a_run_whose_image_cannot_be_cached_stops_naming_the_file(mixed_dir: Path, tmp_path: Path) -> None:
    from medcolor.data.bundle import fill_cache
    from medcolor.errors import DataError

    ds = _dataset(mixed_dir, load_size=40, cache=tmp_path / "cache")
    broken = Path(ds.paths[0])
    broken.write_bytes(b"junk" * 20)
    with (
        pytest.warns(UserWarning),
        pytest.raises(DataError, match=rf"cannot cache 1 image\(s\), the first: .*{broken.name}"),
    ):
        fill_cache([ds], workers=0)
