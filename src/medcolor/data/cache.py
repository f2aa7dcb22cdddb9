"""A preprocessed, memory-mapped cache of reduced images.

Each image is decoded and reduced once (short side -> ``size``, quantized to uint8/uint16: see
:func:`medcolor.data.readers.load_reduced`) by :meth:`ImageCache.build` and appended to one data file.
Files in ``directory`` (one set per ``(name, size)``, so a directory can hold several)::

    {name}-{size}px.data        raw pixel bytes, entries aligned to 64 bytes, append-only
    {name}-{size}px.index.json  the index, always replaced atomically
    {name}-{size}px.lock        held while a build runs

The index maps the **content hash** (BLAKE2b-128 of the file bytes) of each source to its entry
(offset, dtype, height, width), and each source path to ``(size in bytes, mtime_ns, hash)``.  A lookup is
a ``stat`` and two dict lookups; only a file whose size or mtime changed (or a path the index does not
know, e.g. after moving the dataset) is hashed again, once per process.  A changed file whose content
differs no longer matches any entry, so only its own lookups miss (``get`` returns ``None``) until the
next build; a new file is simply not there yet.

Builds are resumable: entries are appended first and the index is flushed atomically every
``flush_every`` seconds and on exit (also on Ctrl-C); after a kill, the bytes written after the last
flush are unreferenced and truncated away by the next build, which then decodes only what is missing.
Only :meth:`ImageCache.build` writes; readers (any number of processes, e.g. DataLoader workers) open the
data file lazily with ``np.memmap`` in their own process; pickling an ``ImageCache`` carries only its
settings, never the map or the index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from medcolor.data.readers import reduce_bytes
from medcolor.errors import ConfigError, DataError, ImageReadError
from medcolor.paths import user_path
from medcolor.utils import atomic_path

try:  # POSIX only; without it concurrent builds are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["ImageCache", "hash_bytes", "hash_file"]

_FORMAT = "medcolor-image-cache"
_VERSION = 1
_ALIGN = 64
_DTYPES = {"u1": np.dtype(np.uint8), "u2": np.dtype("<u2")}


def hash_bytes(data: bytes) -> str:
    """The content key of a source file: BLAKE2b-128 hex digest."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def hash_file(path: str | os.PathLike) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _decode_for_cache(
    job: tuple[str, int],
) -> tuple[str, int, int, str | None, np.ndarray | None, str | None]:
    """Worker: ``(path, size)`` -> ``(path, st_size, mtime_ns, hash, reduced array, error)``."""
    path, size = job
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            raise ImageReadError(f"cannot read image {path}: the file is empty (0 bytes)")
        return path, st.st_size, st.st_mtime_ns, hash_bytes(data), reduce_bytes(data, path, size), None
    except (ImageReadError, OSError) as e:
        return path, 0, 0, None, None, str(e)


class ImageCache:
    """A memory-mapped cache of reduced images (short side ``size``) in ``directory``.

    ``name`` separates caches of different datasets in one directory (datasets use their own name).
    """

    def __init__(self, directory: str | os.PathLike, size: int, *, name: str = "") -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"ImageCache size must be a positive int (the short side in pixels), not {size!r}")
        self.directory = user_path(directory).absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"cache directory {self.directory} exists and is not a folder")
        self.size = size
        self.name = name
        stem = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name) or 'images'}-{size}px"
        self.data_path = self.directory / f"{stem}.data"
        self.index_path = self.directory / f"{stem}.index.json"
        self.lock_path = self.directory / f"{stem}.lock"
        self._reset()

    def _reset(self) -> None:
        self._state: dict[str, Any] | None = None
        self._mm: np.memmap | None = None
        self._mm_len = 0
        self._memo: dict[str, tuple[int, int, str]] = {}
        self.last_report: dict[str, Any] | None = None

    # ------------------------------------------------------------------ pickling: settings only

    def __getstate__(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "size": self.size,
            "name": self.name,
            "data_path": self.data_path,
            "index_path": self.index_path,
            "lock_path": self.lock_path,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def __repr__(self) -> str:
        return f"ImageCache({str(self.directory)!r}, size={self.size}, name={self.name!r})"

    # ------------------------------------------------------------------ index

    def _empty_state(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "name": self.name,
            "size": self.size,
            "data_bytes": 0,
            "entries": {},
            "sources": {},
        }

    def _load_state(self) -> dict[str, Any]:
        if self._state is None:
            if self.index_path.is_file():
                try:
                    state = json.loads(self.index_path.read_text())
                except (OSError, ValueError) as e:
                    raise DataError(
                        f"cache index {self.index_path} is unreadable ({e}); delete {self.data_path.name}"
                        f" and {self.index_path.name} and build the cache again"
                    ) from None
                if state.get("format") != _FORMAT or state.get("version") != _VERSION:
                    raise DataError(
                        f"{self.index_path} is not a medcolor image cache index of version {_VERSION}; "
                        "delete it (and its .data file) and build again"
                    )
                if state.get("size") != self.size:
                    raise DataError(f"{self.index_path} holds images at {state.get('size')} px, not {self.size}")
                self._state = state
            else:
                self._state = self._empty_state()
        return self._state

    def reload(self) -> None:
        """Forget the in-memory index and map, so the next lookup re-reads them (after a build elsewhere)."""
        self._reset()

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data referenced by the index."""
        return int(self._load_state()["data_bytes"])

    def __len__(self) -> int:
        return len(self._load_state()["entries"])

    # ------------------------------------------------------------------ lookups

    @staticmethod
    def _key(path: str | os.PathLike) -> str:
        return os.path.abspath(os.fspath(path))

    def _hash_for(self, key: str) -> str | None:
        try:
            st = os.stat(key)
        except OSError:
            return None
        state = self._load_state()
        rec = state["sources"].get(key)
        if rec is not None and rec[0] == st.st_size and rec[1] == st.st_mtime_ns:
            return rec[2]
        if not state["entries"]:
            return None
        memo = self._memo.get(key)
        if memo is not None and memo[0] == st.st_size and memo[1] == st.st_mtime_ns:
            return memo[2]
        try:
            digest = hash_file(key)
        except OSError:
            return None
        self._memo[key] = (st.st_size, st.st_mtime_ns, digest)
        return digest

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, (str, os.PathLike)):
            return False
        digest = self._hash_for(self._key(path))
        return digest is not None and digest in self._load_state()["entries"]

    def _map(self, need: int) -> np.memmap | None:
        if self._mm is None or self._mm_len < need:
            try:
                length = os.path.getsize(self.data_path)
            except OSError:
                return None
            if length < need:
                return None
            self._mm = np.memmap(self.data_path, dtype=np.uint8, mode="r")
            self._mm_len = length
        return self._mm

    def get(self, path: str | os.PathLike) -> np.ndarray | None:
        """The stored reduced image of ``path`` (uint8 or uint16 (H, W), a private copy), or ``None`` when it
        is not cached, its file changed since, or it does not exist.  Convert with
        :func:`medcolor.data.readers.to_float`."""
        digest = self._hash_for(self._key(path))
        if digest is None:
            return None
        entry = self._load_state()["entries"].get(digest)
        if entry is None:
            return None
        offset, code, h, w = entry
        dtype = _DTYPES[code]
        nbytes = h * w * dtype.itemsize
        mm = self._map(offset + nbytes)
        if mm is None:  # data file shorter than the index says: treat as a miss
            return None
        return np.array(mm[offset : offset + nbytes].view(dtype).reshape(h, w), copy=True)

    # ------------------------------------------------------------------ building

    @contextlib.contextmanager
    def _lock(self, wait: bool = False) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as f:
            if fcntl is not None:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except OSError:
                    raise DataError(
                        f"another process is building the cache {self.data_path}; wait for it (lock {self.lock_path})"
                    ) from None
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _write_index(self, state: dict[str, Any]) -> None:
        with atomic_path(self.index_path) as tmp:
            tmp.write_text(json.dumps(state, separators=(",", ":")))

    def build(
        self,
        paths_or_dataset: Iterable[str | os.PathLike] | Any,
        *,
        progress: bool = True,
        workers: int | None = None,
        flush_every: float = 10.0,
        wait: bool = False,
    ) -> dict[str, Any]:
        """Decode, reduce and store every image not cached yet; returns a report dict
        (``total``, ``reused``, ``decoded``, ``deduplicated``, ``failed`` [(path, message)], ``seconds``).

        ``paths_or_dataset``: image paths or an :class:`~medcolor.data.datasets.XRayDataset` (its ``paths``).
        ``workers``: decoding processes (default ``min(cpu_count, 8)``; 0 or 1 decodes in this process).
        Interrupting (Ctrl-C, kill) keeps everything flushed so far; run it again to resume.  Unreadable
        images are reported in a warning and in ``failed``, not stored.  ``wait``: when another process is
        building this cache, wait for it and then add what is still missing (default: raise DataError).
        """
        t0 = time.perf_counter()
        source = getattr(paths_or_dataset, "paths", paths_or_dataset)
        keys = list(dict.fromkeys(self._key(p) for p in source))
        if workers is None:
            workers = min(os.cpu_count() or 1, 8)
        report: dict[str, Any] = {
            "total": len(keys),
            "reused": 0,
            "decoded": 0,
            "deduplicated": 0,
            "failed": [],
            "seconds": 0.0,
        }
        with self._lock(wait):
            self._reset()
            state = self._load_state()
            self._truncate_to_index(state)
            todo = self._missing(keys, state, report)
            self._append(todo, state, report, workers=workers, flush_every=flush_every, progress=progress)
        report["seconds"] = time.perf_counter() - t0
        self.last_report = report
        if report["failed"]:
            first = "; ".join(str(m) for _, m in report["failed"][:3])
            warnings.warn(
                f"cache build: {len(report['failed'])} image(s) could not be read and were not cached "
                f"({first}{'; ...' if len(report['failed']) > 3 else ''})",
                stacklevel=2,
            )
        return report

    def _append(
        self,
        todo: list[str],
        state: dict[str, Any],
        report: dict[str, Any],
        *,
        workers: int,
        flush_every: float,
        progress: bool,
    ) -> None:
        """Decode ``todo`` and append each image to the data file, flushing the index every ``flush_every``
        seconds and at the end (also when interrupted), so a later build resumes from there."""
        from tqdm.auto import tqdm

        bar = tqdm(
            total=report["total"],
            initial=report["reused"],
            disable=not progress,
            unit="img",
            desc=f"cache {self.data_path.name}",
        )
        last_flush = time.monotonic()
        with open(self.data_path, "r+b") as f:
            f.seek(state["data_bytes"])
            try:
                for item in self._decode_all(todo, workers):
                    bar.update(1)
                    self._store(f, state, item, report)
                    if time.monotonic() - last_flush >= flush_every:
                        self._flush(f, state)
                        last_flush = time.monotonic()
            finally:
                bar.close()
                self._flush(f, state)

    def _truncate_to_index(self, state: dict[str, Any]) -> None:
        """Make the data file and the index agree after an interrupted build: entries past the end of the
        data (lost writes) are dropped, bytes past the last indexed entry (orphans) are cut off."""
        entries = state["entries"]
        self.data_path.touch(exist_ok=True)
        actual = os.path.getsize(self.data_path)
        if actual < state["data_bytes"]:  # index ahead of data (lost writes): drop what is not there
            for k in [k for k, e in entries.items() if _entry_end(e) > actual]:
                del entries[k]
            state["data_bytes"] = max((_entry_end(e) for e in entries.values()), default=0)
        if actual != state["data_bytes"]:
            os.truncate(self.data_path, state["data_bytes"])  # orphaned bytes of an interrupted build

    def _missing(self, keys: list[str], state: dict[str, Any], report: dict[str, Any]) -> list[str]:
        """The images of ``keys`` to decode: not cached, or changed on disk with a content not cached (a file
        whose size/mtime changed but whose bytes hash to a cached entry is re-pointed, not decoded)."""
        entries, sources = state["entries"], state["sources"]
        todo = []
        for k in keys:
            try:
                st = os.stat(k)
            except OSError as e:
                report["failed"].append((k, f"cannot read image {k}: {e.strerror or e}"))
                continue
            rec = sources.get(k)
            if rec is not None and rec[0] == st.st_size and rec[1] == st.st_mtime_ns and rec[2] in entries:
                report["reused"] += 1
                continue
            if rec is not None:  # known file whose size/mtime changed: same content needs no decoding
                try:
                    digest: str | None = hash_file(k)
                except OSError:
                    digest = None
                if digest in entries:
                    sources[k] = [st.st_size, st.st_mtime_ns, digest]
                    report["reused"] += 1
                    continue
            todo.append(k)
        return todo

    def _store(self, f: Any, state: dict[str, Any], item: tuple, report: dict[str, Any]) -> None:
        """Append one decoded image (aligned) unless its content is cached already, and point its path at it."""
        path, st_size, mtime, digest, arr, err = item
        entries = state["entries"]
        if err is not None or digest is None or arr is None:
            report["failed"].append((path, err))
            return
        if digest in entries:
            report["deduplicated"] += 1
        else:
            offset = -(-f.tell() // _ALIGN) * _ALIGN
            if offset != f.tell():
                f.write(b"\0" * (offset - f.tell()))
            code = "u1" if arr.dtype == np.uint8 else "u2"
            f.write(arr.astype(_DTYPES[code], copy=False).tobytes())
            entries[digest] = [offset, code, *arr.shape]
            report["decoded"] += 1
        state["sources"][path] = [st_size, mtime, digest]

    def _flush(self, f: Any, state: dict[str, Any]) -> None:
        f.flush()
        os.fsync(f.fileno())
        state["data_bytes"] = f.tell()
        self._write_index(state)

    def _decode_all(self, todo: list[str], workers: int) -> Iterator[tuple]:
        jobs = [(k, self.size) for k in todo]
        if workers <= 1 or len(jobs) < 2 * max(workers, 1):
            for job in jobs:
                yield _decode_for_cache(job)
            return
        ex = ProcessPoolExecutor(max_workers=workers)
        try:
            yield from ex.map(_decode_for_cache, jobs, chunksize=4)
        finally:
            ex.shutdown(wait=False, cancel_futures=True)


def _entry_end(e: list[Any]) -> int:
    """The byte just past a cached image: offset + height x width x item size."""
    return e[0] + e[2] * e[3] * _DTYPES[e[1]].itemsize
