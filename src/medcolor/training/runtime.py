"""Where and how the network computes: accelerator, precision, memory format, device-side augmentation,
the Lightning ``Trainer`` built from them, out-of-memory hints.

Nothing here imports Lightning at module level, so inference can resolve its device and precision
cheaply (the autocast helper itself is :func:`medcolor.utils.autocast`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import platform
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medcolor.config import RunConfig, TrainerConfig, check_precision, parse_channels_last
from medcolor.errors import ConfigError, TrainingError, WeightsError
from medcolor.utils import show_progress_bar

if TYPE_CHECKING:
    import lightning as L


def resolve_accelerator(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``gpu``/``cuda`` without a GPU is an error."""
    name = (name or "auto").lower()
    if name in ("auto", "gpu", "cuda"):
        if torch.cuda.is_available():
            return "cuda"
        if name != "auto":
            raise ConfigError(f"accelerator {name!r} was asked for but no CUDA GPU is visible; use --accelerator cpu")
        return "cpu"
    if name == "cpu":
        return "cpu"
    raise ConfigError(f"unknown accelerator {name!r}; valid: auto, cpu, gpu")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_bf16_flags() -> list[str]:
    """The CPU's bf16 instruction sets among ``amx_bf16`` and ``avx512_bf16`` (``/proc/cpuinfo``)."""
    words = set(_cpuinfo().split())
    return [f for f in ("amx_bf16", "avx512_bf16") if f in words]


def cpu_has_bf16() -> bool:
    return bool(cpu_bf16_flags())


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what :mod:`platform` knows)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name") and ":" in line:
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16 autocast where the hardware has bf16 (the measurements: docs/defaults.md), fp16 autocast
    on older GPUs, else fp32."""
    check_precision(precision)
    if precision != "auto":
        return precision
    if accelerator == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"


def resolve_channels_last(value: str | bool) -> bool:
    """``trainer.channels_last`` as a bool (``auto``: true)."""
    return parse_channels_last(value)


@dataclass(frozen=True)
class Runtime:
    """The hardware choices of a run, resolved once from its configuration."""

    accelerator: str
    precision: str
    channels_last: bool
    #: rotation/zoom runs batched on the accelerator (else per sample in the data-loader workers)
    augment_on_device: bool
    trainer: TrainerConfig

    @property
    def rotate_zoom_in_worker(self) -> bool:
        return not self.augment_on_device


def resolve_runtime(cfg: RunConfig) -> Runtime:
    accelerator = resolve_accelerator(cfg.trainer.accelerator)
    augment_on = cfg.data.augment_on
    if augment_on not in ("auto", "worker", "device"):
        raise ConfigError(f"data.augment_on must be auto, worker or device, got {augment_on!r}")
    return Runtime(
        accelerator=accelerator,
        precision=resolve_precision(cfg.trainer.precision, accelerator),
        channels_last=resolve_channels_last(cfg.trainer.channels_last),
        augment_on_device=augment_on == "device" or (augment_on == "auto" and accelerator == "cuda"),
        trainer=cfg.trainer,
    )


def describe_environment(runtime: Runtime) -> dict[str, Any]:
    """Where and how a stage computed: the device (the GPU's or the CPU's name), the resolved precision and
    memory format, the CPU's bf16 instruction sets, torch's threads and versions.  The same seed gives the
    same numbers on the same kind of machine only: bf16 kernels differ between CPUs (AMX or not), so a result
    records where it came from (``result.json`` ``environment``, the study table's ``device``/``precision``)."""
    cuda = runtime.accelerator == "cuda" and torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name() if cuda else cpu_name(),
        "accelerator": runtime.accelerator,
        "precision": runtime.precision,
        "channels_last": runtime.channels_last,
        "cpu": cpu_name(),
        "cpu_bf16": cpu_bf16_flags(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def configure_determinism() -> None:
    """cuBLAS needs a fixed workspace for deterministic matrix products on the GPU."""
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def make_trainer(runtime: Runtime, **kw: Any) -> L.Trainer:
    """A Lightning ``Trainer`` for ``runtime``; ``kw`` (max_epochs, callbacks, default_root_dir...) on top."""
    import lightning as L

    t = runtime.trainer
    kwargs: dict[str, Any] = dict(
        accelerator=runtime.accelerator,
        devices=t.devices if runtime.accelerator != "cpu" or t.devices != "auto" else 1,
        num_nodes=t.num_nodes,
        precision=runtime.precision,
        strategy=t.strategy,
        logger=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_model_summary=False,
        deterministic=t.deterministic
        if not isinstance(t.deterministic, str) or t.deterministic == "warn"
        else t.deterministic.lower() == "true",
    )
    kwargs.update(kw)
    kwargs.setdefault("enable_progress_bar", show_progress_bar(t.progress, sys.stdout))  # Lightning's: stdout
    from medcolor.quiet import quiet_lightning

    quiet_lightning()  # no "GPU available" / tip lines, no known-harmless warnings
    trainer = L.Trainer(**kwargs)
    skip_filling_uninitialized_memory()
    return trainer


def skip_filling_uninitialized_memory() -> None:
    """With deterministic algorithms on (Lightning's ``deterministic`` true or ``warn``), torch also fills every
    new uninitialised tensor with NaN (``torch.utils.deterministic.fill_uninitialized_memory``), a debugging aid
    that costs time on every training step (docs/defaults.md) and changes no result: kernels that are correct
    never read uninitialised memory.  Turned off."""
    if torch.are_deterministic_algorithms_enabled():
        torch.utils.deterministic.fill_uninitialized_memory = False


def run_fit(trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
    """trainer.fit, turning Lightning's exit on Ctrl-C back into KeyboardInterrupt and giving OOM hints."""
    try:
        trainer.fit(*args, **kwargs)
    except pickle.UnpicklingError as exc:  # weights_only=True refused the resume checkpoint
        ckpt = kwargs.get("ckpt_path")
        raise WeightsError(
            f"{ckpt} cannot be loaded safely: it holds objects a checkpoint medcolor writes never holds "
            f"({str(exc).splitlines()[0][:200]}), so it was not unpickled. It is not this run's checkpoint: "
            "delete it to restart the stage from its beginning"
        ) from None
    except SystemExit as exc:  # Lightning's graceful shutdown after KeyboardInterrupt
        raise KeyboardInterrupt("training interrupted") from exc
    except torch.OutOfMemoryError as exc:
        raise TrainingError(out_of_memory_hint(exc)) from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc).lower():
            raise TrainingError(out_of_memory_hint(exc)) from exc
        raise
    finally:
        with contextlib.suppress(ValueError):  # Lightning leaves SIGINT ignored after an interrupt
            signal.signal(signal.SIGINT, signal.default_int_handler)


def out_of_memory_hint(exc: BaseException) -> str:
    return (
        f"out of memory ({str(exc).splitlines()[0][:200]}). Try a smaller --batch-size, a smaller input "
        "--size, --precision bf16-mixed (half the activation memory), fewer --num-workers, or a lighter "
        "--backbone / --colorizer (colorU has 1/3 of pixelshuffle's parameters)."
    )


__all__ = [
    "Runtime",
    "configure_determinism",
    "cpu_bf16_flags",
    "cpu_has_bf16",
    "cpu_name",
    "describe_environment",
    "make_trainer",
    "out_of_memory_hint",
    "resolve_accelerator",
    "resolve_channels_last",
    "resolve_precision",
    "resolve_runtime",
    "run_fit",
    "skip_filling_uninitialized_memory",
]
