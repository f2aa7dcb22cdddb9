"""Learning-rate suggestions from an LR range test curve (Smith 2017); pure numpy, no Lightning.

The curve is (lr, loss) recorded over an exponential sweep, the loss smoothed by :func:`smooth_losses`
(an exponential moving average, bias-corrected); the sweep stops once it exceeds 4x its best value.  Three rules, chosen
with ``lr_find.rule`` (``--lr-rule``):

* ``steepest`` (default): the point of steepest descent of the smoothed loss (Lightning's own rule).
* ``minimum``: the learning rate of the lowest (smoothed) loss divided by 10, the classic rule of thumb.
* ``valley``: the middle of the longest descending stretch of the curve, fastai's default, which ignores
  short noisy dips.  The stretch is the longest subsequence of strictly decreasing losses; the suggestion
  sits half-way through it (in log-lr).

What the rules give on recorded curves and in training, and why ``steepest`` is the default: docs/defaults.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medcolor.config import LR_RULES  # the rule names are config values; the rules live here

#: the smoothing of the loss (an exponential moving average, as fastai and Lightning)
BETA = 0.98
#: the sweep stops once the smoothed loss exceeds this multiple of its lowest value (fastai, Lightning)
DIVERGENCE_FACTOR = 4.0


def smooth_losses(raw: Sequence[float], beta: float = BETA) -> np.ndarray:
    """The exponential moving average of the per-step losses with its bias corrected, so the first value
    is the first loss (dividing step k's average by ``1 - beta**(k + 2)``, as Lightning's finder does, is
    off by one: the curve would start at about half the real loss and seem to rise over the first steps).
    NaN from the first non-finite loss on."""
    out = np.full(len(raw), np.nan)
    avg = 0.0
    for k, loss in enumerate(raw):
        if not np.isfinite(loss):
            break
        avg = beta * avg + (1 - beta) * float(loss)
        out[k] = avg / (1 - beta ** (k + 1))
    return out


def diverged(smoothed: np.ndarray, factor: float = DIVERGENCE_FACTOR) -> bool:
    """Whether the sweep can stop: the last smoothed loss is not finite or ``factor`` x the lowest."""
    if len(smoothed) == 0:
        return False
    last = smoothed[-1]
    return not np.isfinite(last) or (len(smoothed) > 2 and last > factor * np.nanmin(smoothed))


def _finite_prefix(lrs: Sequence[float], losses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The curve up to the first non-finite loss (the sweep diverged there)."""
    lr = np.asarray(lrs, dtype=float)
    loss = np.asarray(losses, dtype=float)
    bad = ~np.isfinite(loss) | ~np.isfinite(lr)
    end = int(np.argmax(bad)) if bad.any() else len(loss)
    return lr[:end], loss[:end]


def _longest_descent(loss: np.ndarray) -> tuple[int, int]:
    """Start and end index of the longest strictly decreasing subsequence (O(n^2), n is ~100)."""
    n = len(loss)
    length = np.ones(n, dtype=int)
    start = np.arange(n)
    for i in range(1, n):
        for j in range(i):
            if loss[i] < loss[j] and length[j] + 1 > length[i]:
                length[i] = length[j] + 1
                start[i] = start[j]
    end = int(np.argmax(length))
    return int(start[end]), end


def suggest_lr(
    lrs: Sequence[float], losses: Sequence[float], rule: str = "valley", *, skip_begin: int = 10, skip_end: int = 1
) -> float | None:
    """The learning rate ``rule`` picks from an LR range test curve, or None when the curve is too short
    (fewer than 5 finite points after skipping) or never descends."""
    if rule not in LR_RULES:
        raise ValueError(f"unknown LR rule {rule!r}; choose one of {', '.join(LR_RULES)}")
    lr, loss = _finite_prefix(lrs, losses)
    stop = len(loss) - skip_end if skip_end else len(loss)
    lr, loss = lr[skip_begin:stop], loss[skip_begin:stop]
    if len(loss) < 5:
        return None
    if rule == "minimum":
        i = int(np.argmin(loss))
        return float(lr[i] / 10.0) if i > 0 else None
    if rule == "steepest":
        grad = np.gradient(loss)
        i = int(np.argmin(grad))
        return float(lr[i]) if grad[i] < 0 else None
    first, last = _longest_descent(loss)
    if last - first < 2:
        return None
    log_lr = np.log(lr[first : last + 1])
    return float(np.exp((log_lr[0] + log_lr[-1]) / 2.0))


__all__ = ["BETA", "DIVERGENCE_FACTOR", "LR_RULES", "diverged", "smooth_losses", "suggest_lr"]
