"""Exceptions with messages meant for people.

Every error that bad input can cause derives from :class:`MedcolorError`.  Its message names the file,
row, column or option at fault and says how to fix it; the command line prints it without a traceback.
"""

from __future__ import annotations

import re

#: How PyTorch re-raises an exception of a DataLoader worker: ``exc_type("Caught X in DataLoader worker
#: process N.\nOriginal Traceback ...")`` with the worker's whole formatted traceback as the message.
_RERAISED = re.compile(r"\ACaught \w+ (?P<where>.+?)\.\nOriginal Traceback \(most recent call last\):\n")


def _worker_message(text: str, cls: type, where: str) -> str:
    """The original message of an error re-raised from a DataLoader worker, and where it came from."""
    marker = f"{cls.__module__}.{cls.__qualname__}: "
    k = text.rfind(marker)
    if k >= 0:
        message = text[k + len(marker) :].strip()
    else:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        message = lines[-1].strip() if lines else text
    return f"{message} (raised {where})"


class MedcolorError(Exception):
    """Base class of all user-facing medcolor errors.

    Re-raised by PyTorch from a DataLoader worker, it keeps its class and its own one-line message (plus
    "raised in DataLoader worker process N") instead of the worker's traceback."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith("Caught "):
            m = _RERAISED.match(args[0])
            if m is not None:
                args = (_worker_message(args[0], type(self), m["where"]),)
        super().__init__(*args)


class ConfigError(MedcolorError, ValueError):
    """An option, name or configuration value is invalid."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup failed (unknown colorizer, backbone, strategy, dataset...)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(MedcolorError):
    """A weights file is missing, unreadable or does not fit the architecture."""


class DataError(MedcolorError, ValueError):
    """A dataset file, row or label is invalid."""


class ImageReadError(DataError):
    """An image file cannot be read or decoded."""


class TrainingError(MedcolorError, RuntimeError):
    """Training cannot go on (diverged loss, failed LR search...)."""


class OptionError(ConfigError):
    """An option has a value it cannot take.

    ``keys`` are the configuration keys at fault (``data.size``, ``stages[0].lr``) or, for options that are
    no configuration key, the flag itself (``--batch-size``); the command line names the flag of each key
    beside it (``--size (data.size): ...``).  ``source`` is the file the value came from, if any."""

    def __init__(self, keys: str | tuple[str, ...], problem: str, source: str | None = None) -> None:
        self.keys = (keys,) if isinstance(keys, str) else tuple(keys)
        self.problem = problem
        self.source = source
        where = ".".join(x for x in (source, ", ".join(k for k in self.keys if k)) if x)
        super().__init__(f"{where}: {problem}" if where else problem)


class UnknownOptionValueError(OptionError, UnknownNameError):
    """An option names something that is not registered (a colorizer, strategy, frozen-BN mode...)."""
