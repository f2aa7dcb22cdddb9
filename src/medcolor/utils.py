"""Small shared helpers: atomic file writes, seeding, JSON, the one autocast helper, progress-bar rules,
the console logging of medcolor's processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename, so a
    killed process never leaves a half-written file behind."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file the caller asked for, never the temporary one
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n")


def to_jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across runs, processes and platforms)."""
    state = np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


def nonfinite_tensors(module: torch.nn.Module) -> list[str]:
    """Names of ``module``'s floating-point parameters and buffers holding NaN or inf (one device sync)."""
    named = [(n, t) for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_floating_point()]
    if not named:
        return []
    bad = torch.stack([~torch.isfinite(t.detach()).all() for _, t in named]).cpu().tolist()
    return [n for (n, _), b in zip(named, bad, strict=True) if b]


class DieWithParent:
    """A DataLoader ``worker_init_fn`` that makes the worker die with the process that started it: on Linux
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so a SIGKILLed ``train`` leaves no worker behind (they used to run on
    for a while, holding memory and GPU handles); then ``fn(worker_id)``, the loader's own init function, if
    any.  A no-op elsewhere.  Picklable (spawned workers get it too)."""

    def __init__(self, fn: Callable[[int], Any] | None = None) -> None:
        self.fn = fn
        self.parent = os.getpid()  # the process that creates the loader (and so its workers)

    def __call__(self, worker_id: int) -> None:
        if sys.platform.startswith("linux"):
            _set_parent_death_signal()
            if os.getppid() != self.parent:  # the parent died before prctl: the signal will never come
                os._exit(1)
        if self.fn is not None:
            self.fn(worker_id)


#: prctl(2) option: the signal this process gets when its parent dies
PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl (musl without it, sandbox): workers live as before
        pass


def resolve_num_workers(value: int | str, accelerator: str, devices: int = 1) -> int:
    """``data.num_workers`` as a number: ``auto`` is 2 on the CPU (capped by its cores), and beside GPUs
    the machine's cores shared by the ``devices`` processes, at most 8 each, so that decoding and the
    per-sample augmentation keep a GPU step fed."""
    if value != "auto":
        return int(value)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if accelerator == "cuda":
        return max(1, min(8, cores // max(1, devices) - 1))
    return min(2, cores)


def quiet_lightning() -> None:
    """Lightning's own loggers from WARNING, and its warnings that do not apply to medcolor's runs off."""
    import lightning.pytorch  # noqa: F401 - it sets its loggers to INFO on import; lower them afterwards

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*You defined a `validation_step` but have no `val_dataloader`.*")


class _ConsoleHandler(logging.Handler):
    """The ``medcolor`` logger on the terminal: INFO as plain lines on stdout (what the commands always
    printed), DEBUG with the logger's name, warnings and errors on stderr.  Writes to the ``sys.stdout``
    / ``sys.stderr`` of the moment (so captured output in tests and notebooks gets it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.levelno < logging.INFO:
                text = f"{record.name}: {text}"
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(text + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging(verbose: bool = False) -> None:
    """Show medcolor's messages on the terminal (INFO; DEBUG with ``verbose``) and third-party ones
    (Lightning) from WARNING (INFO with ``verbose``).  Safe to call more than once."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    logger = logging.getLogger("medcolor")
    for h in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(h)
    logger.addHandler(_ConsoleHandler())
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False  # not a second time through the root handler


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a Lightning-style ``precision`` on ``device`` (``cpu``/``cuda``): bf16 for
    ``bf16-*``, fp16 for ``16-*`` on a GPU, none otherwise.  The one autocast helper: evaluation and
    prediction use it (training gets autocast from Lightning's precision plugin)."""
    if precision.startswith("bf16"):
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    if precision.startswith("16") and device == "cuda":
        return torch.autocast(device_type=device, dtype=torch.float16)
    return contextlib.nullcontext()


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes and captured output)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def show_progress_bar(progress: bool, stream: Any = None) -> bool:
    """Whether to draw a progress bar on ``stream`` (default stderr, tqdm's): only when asked for and
    the stream is a terminal.  A bar redraws itself with carriage returns: written into a log file or a
    pipe (``medcolor evaluate ... > log 2>&1``) it leaves hundreds of lines, so there plain log lines
    (one per validation chunk, or per tenth of the images predicted) take its place."""
    return bool(progress) and is_terminal(sys.stderr if stream is None else stream)
