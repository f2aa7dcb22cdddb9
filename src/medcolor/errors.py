"""Exceptions with messages meant for people.

Every error that bad input can cause derives from :class:`MedcolorError`.  Its message names the file,
row, column or option at fault and says how to fix it; the command line prints it without a traceback.
"""

from __future__ import annotations


class MedcolorError(Exception):
    """Base class of all user-facing medcolor errors."""


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
