"""What a user sees from the libraries under medcolor: clean one-line messages, not raw warnings.

* :func:`route_medcolor_warnings`: medcolor's own warnings (e.g. ``MissingImagesWarning``) are shown as one line
  through :mod:`logging` (logger ``medcolor.<module>``) instead of Python's ``file:line: Category: message`` and
  the source line.  Only their display changes: filters, ``pytest.warns`` and ``-W error`` treat them as before.
* :func:`quiet_lightning`: Lightning's chatter in the Python API — "GPU available: ...", "TPU available: ...",
  its "Tip" lines, "Using bfloat16 Automatic Mixed Precision (AMP)", "`Trainer.fit` stopped: ..." — and its
  warnings that say nothing about a medcolor run ("Found N module(s) in eval mode": frozen BatchNorm layers
  stay in eval mode on purpose; the ``srun`` hint; the LeafSpec deprecation; "does not have many workers") are
  dropped.  Lightning's other messages pass.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

#: INFO lines of Lightning's rank-zero logger that medcolor drops
_LIGHTNING_NOISE = re.compile(
    r"^(GPU available|TPU available|HPU available|IPU available|💡 Tip|`Trainer\.fit` stopped|LOCAL_RANK: \d+ - "
    r"|Restored all states from the checkpoint at .*lr_find|Learning rate set to|Using \S+ Automatic Mixed Precision)"
)
#: warnings (messages, regular expressions) dropped whenever medcolor builds a Lightning Trainer
_WARNINGS = (
    r".*module\(s\) in eval mode.*",
    r".*The `srun` command is available on your system but is not used.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*does not have many workers.*",
    r".*is smaller than the logging interval.*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",  # the LR range test has none
)
_installed: dict[str, Any] = {}


class _DropLightningNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.WARNING and _LIGHTNING_NOISE.match(str(record.msg)))


def quiet_lightning() -> None:
    """Drop Lightning's known noise (see the module's docstring); safe to call more than once (the warning
    filters are set again each time: code that saves and restores them, as pytest does, may have dropped them)."""
    for message in _WARNINGS:
        warnings.filterwarnings("ignore", message=message)  # an identical filter is replaced, not repeated
    if _installed.get("lightning"):
        return
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropLightningNoise())
    _installed["lightning"] = True


def route_medcolor_warnings() -> None:
    """Show warnings of medcolor's own classes as one log line (see the module's docstring); idempotent."""
    if _installed.get("warnings"):
        return
    original = warnings.showwarning

    def showwarning(message: Any, category: type[Warning], filename: str, lineno: int, file=None, line=None) -> None:
        if category.__module__.startswith("medcolor."):
            logging.getLogger(category.__module__).warning(f"warning: {message}")
        else:
            original(message, category, filename, lineno, file, line)

    showwarning.original = original  # type: ignore[attr-defined]
    warnings.showwarning = showwarning
    _installed["warnings"] = True


__all__ = ["quiet_lightning", "route_medcolor_warnings"]
