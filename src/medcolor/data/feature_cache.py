"""A memory-mapped cache of a frozen E's pooled features, beside the image cache (:mod:`medcolor.data.cache`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medcolor.errors import DataError
from medcolor.paths import user_path
from medcolor.utils import atomic_path

try:  # POSIX only; without it concurrent builds are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_FEATURE_FORMAT = "medcolor-feature-cache"


class FeatureCache:
    """A memory-mapped cache of a frozen E's pooled features, one float32 row per image.

    ``key`` identifies everything the features depend on besides the image (E's and T's weights, the input
    size, normalisation, precision and memory format: :func:`medcolor.training.features.feature_key`); images
    are identified by their path, file size and mtime, so a changed file is computed again.  Files in
    ``directory`` (beside the image cache when the run has one)::

        {name}-{size}px-features-{key}.f32         rows of ``num_features`` float32, append-only
        {name}-{size}px-features-{key}.index.json  image -> row, the row dtype E gave; replaced atomically

    Reused across epochs, stages, seeds and study cells with the same E, T and input; a build appends only
    the images the index lacks, under a lock (``.lock``) so that concurrent cells do not interleave rows.
    """

    def __init__(self, directory: str | os.PathLike, key: str, num_features: int, size: int, *, name: str = "") -> None:
        self.directory = user_path(directory).absolute()
        self.key, self.num_features, self.size = str(key), int(num_features), int(size)
        stem = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name) or 'images'}-{size}px-features-{self.key}"
        self.data_path = self.directory / f"{stem}.f32"
        self.index_path = self.directory / f"{stem}.index.json"
        self.lock_path = self.directory / f"{stem}.lock"

    @staticmethod
    def image_key(path: str | os.PathLike) -> str:
        st = os.stat(path)
        return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"

    def _index(self) -> dict[str, Any]:
        if self.index_path.is_file():
            try:
                index = json.loads(self.index_path.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(
                    f"feature cache index {self.index_path} is damaged ({exc}); delete it to rebuild"
                ) from exc
            if index.get("format") != _FEATURE_FORMAT or index.get("num_features") != self.num_features:
                raise DataError(f"{self.index_path} is not a feature cache of {self.num_features} features; delete it")
            return index
        return {
            "format": _FEATURE_FORMAT,
            "key": self.key,
            "num_features": self.num_features,
            "rows": {},
            "dtype": None,
        }

    def rows(self, keys: list[str]) -> tuple[list[int | None], str | None]:
        """The row of each image key (None: not cached yet) and the dtype E gave the features in."""
        index = self._index()
        return [index["rows"].get(k) for k in keys], index.get("dtype")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def add(self, keys: list[str], features: np.ndarray, dtype: str) -> None:
        """Append the rows of images the cache does not hold yet (the others are left as they are)."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.shape != (len(keys), self.num_features):
            raise ValueError(f"expected features of shape ({len(keys)}, {self.num_features}), got {features.shape}")
        with self._locked():
            index = self._index()
            if index.get("dtype") not in (None, dtype):
                raise DataError(f"{self.index_path} holds {index['dtype']} features, not {dtype}; delete it")
            n = len(index["rows"])
            expected = n * self.num_features * 4
            with open(self.data_path, "ab") as f:
                f.truncate(expected)  # bytes of a killed build after the last index write are dropped
                new = [(k, r) for k, r in zip(keys, features, strict=True) if k not in index["rows"]]
                for i, (k, row) in enumerate(new):
                    f.write(row.tobytes())
                    index["rows"][k] = n + i
            index["dtype"] = dtype
            with atomic_path(self.index_path) as tmp:
                Path(tmp).write_text(json.dumps(index))

    def read(self, keys: list[str]) -> np.ndarray:
        """The features of ``keys`` (all must be cached) as an ``(N, num_features)`` float32 array."""
        rows, _ = self.rows(keys)
        missing = [k for k, r in zip(keys, rows, strict=True) if r is None]
        if missing:
            raise DataError(f"{len(missing)} image(s) are not in the feature cache {self.data_path}, e.g. {missing[0]}")
        total = os.path.getsize(self.data_path) // (4 * self.num_features)
        mm = np.memmap(self.data_path, dtype=np.float32, mode="r", shape=(total, self.num_features))
        return np.asarray(mm[np.asarray(rows, dtype=np.int64)])


__all__ = ["FeatureCache"]
