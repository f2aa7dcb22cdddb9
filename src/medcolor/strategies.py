"""The learning strategies of the paper (Sec. III-A, V-A, V-C) as named freeze plans.

============== ============ ========= ========= ========= ==================================
strategy       T            E         C         C reset   paper
============== ============ ========= ========= ========= ==================================
baseline       replicate    frozen    trained   yes       Baseline (gray copied to RGB)
baseline-all   replicate    trained   trained   yes       Baseline All
color-module   learned      frozen    trained   yes       Color Module, eq. (1)
all            learned      trained   trained   yes       All, eq. (2) (after color-module)
last-layer     transferred  frozen    trained   yes       Last Layer, eq. (3)
transfer-all   transferred  trained   trained   yes       T, E transferred + fine-tuned, eq. (2)
============== ============ ========= ========= ========= ==================================

"transferred" means T comes from an earlier stage or from a saved colorizer / model file; it must not
be a freshly initialised T.  ``last-layer`` and ``transfer-all`` also accept ``replicate`` (a
transferred E without colorization).

Whether a sequence of stages can run on a given T is decided in one place, :func:`check_stage` (one
stage) and :func:`check_stage_sequence` (a whole run, before any work): pure functions of the strategy,
whether T is learnable and whether it is already trained/transferred.  :func:`transferred_after` is
the one rule for when T counts as transferred (after any stage that trains it), and
:func:`default_colorizer` the one rule for T when none is named.

What "frozen" does to BatchNorm layers inside a frozen part is the ``frozen_bn`` option:

* ``"fastai"`` (default, as the paper, which trained with fastai): BatchNorm layers stay trainable —
  affine weight/bias get gradients and running statistics keep updating;
* ``"stats"``: BN affine parameters are frozen, running statistics keep updating (plain PyTorch
  ``requires_grad_(False)`` behaviour);
* ``"eval"``: BN fully frozen — no gradients and the layers stay in eval mode (a strict linear probe).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from medcolor.errors import ConfigError
from medcolor.registry import Registry

FROZEN_BN_MODES = ("fastai", "stats", "eval")


@dataclass(frozen=True)
class Strategy:
    name: str
    #: "replicate" (must be the gray copy), "learned" (a learnable T) or "transferred"
    colorizer: str
    train_colorizer: bool
    train_backbone: bool
    reset_head: bool
    description: str

    @property
    def requires_learned_colorizer(self) -> bool:
        return self.colorizer == "learned"

    @property
    def requires_transferred_colorizer(self) -> bool:
        return self.colorizer == "transferred"


STRATEGIES: Registry[Strategy] = Registry("strategy")

for _s in (
    Strategy("baseline", "replicate", False, False, True, "gray copied to 3 channels, E frozen, C trained"),
    Strategy("baseline-all", "replicate", False, True, True, "gray copied to 3 channels, E and C trained"),
    Strategy("color-module", "learned", True, False, True, "T and C trained from scratch, E frozen"),
    Strategy("all", "learned", True, True, True, "T and E fine-tuned, C re-initialised and trained"),
    Strategy("last-layer", "transferred", False, False, True, "T and E transferred and frozen, new C trained"),
    Strategy("transfer-all", "transferred", True, True, True, "T and E transferred and fine-tuned, new C"),
):
    STRATEGIES.register(_s.name, _s)


def get_strategy(name: str | Strategy) -> Strategy:
    return name if isinstance(name, Strategy) else STRATEGIES.get(name)


def list_strategies() -> list[str]:
    return STRATEGIES.names()


def check_frozen_bn(mode: str) -> str:
    if mode not in FROZEN_BN_MODES:
        raise ConfigError(f"unknown frozen_bn mode {mode!r}; valid modes: {', '.join(FROZEN_BN_MODES)}")
    return mode


def default_colorizer(first_strategy: str | Strategy) -> str:
    """T when none is named: the gray copy (``replicate``) for baseline runs, else ``pixelshuffle``."""
    return "replicate" if get_strategy(first_strategy).colorizer == "replicate" else "pixelshuffle"


def transferred_after(strategy: str | Strategy, transferred: bool) -> bool:
    """Whether T counts as trained/transferred after a stage of ``strategy`` (it does once any stage trained it)."""
    return transferred or get_strategy(strategy).train_colorizer


def check_stage(
    strategy: str | Strategy, *, colorizer: str, learnable: bool, transferred: bool, where: str | None = None
) -> Strategy:
    """Check that ``strategy`` can run on T (named ``colorizer``; ``learnable``: it has parameters, i.e. it
    is not the gray copy; ``transferred``: it was trained in an earlier stage or loaded from a file).
    Raises :class:`~medcolor.errors.ConfigError` saying how to fix it; returns the strategy."""
    s = get_strategy(strategy)
    where = where or f"strategy {s.name!r}"
    if s.colorizer == "replicate" and learnable:
        raise ConfigError(
            f"{where} feeds the gray image copied to 3 channels, but T ({colorizer!r}) is a learned colorizer: "
            "use colorizer 'replicate' (baseline strategies run in a run of their own), or a colorization "
            "strategy (color-module, all)"
        )
    if s.colorizer == "learned" and not learnable:
        raise ConfigError(
            f"{where} trains the colorization module T, but colorizer {colorizer!r} has no parameters; "
            "choose deconv, pixelshuffle or colorU, or use strategy baseline/baseline-all"
        )
    if s.colorizer == "transferred" and learnable and not transferred:
        raise ConfigError(
            f"{where} needs a transferred colorization module T, but T ({colorizer!r}) is freshly initialised: "
            "pass --colorizer-from FILE (an exported T) or --init-from RUN (T and E of an earlier run), or "
            "train it first in a 'color-module' stage"
        )
    return s


def check_stage_sequence(
    strategies: Iterable[str | Strategy], *, colorizer: str, learnable: bool, transferred: bool
) -> list[Strategy]:
    """:func:`check_stage` for each stage of a run in turn, T becoming transferred after a stage trains it."""
    out = []
    for i, name in enumerate(strategies):
        s = get_strategy(name)
        out.append(
            check_stage(
                s, colorizer=colorizer, learnable=learnable, transferred=transferred, where=f"stage {i + 1} ({s.name})"
            )
        )
        transferred = transferred_after(s, transferred)
    return out


__all__ = [
    "FROZEN_BN_MODES",
    "STRATEGIES",
    "Strategy",
    "check_frozen_bn",
    "check_stage",
    "check_stage_sequence",
    "default_colorizer",
    "get_strategy",
    "list_strategies",
    "transferred_after",
]
