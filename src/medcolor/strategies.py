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

What "frozen" does to BatchNorm layers inside a frozen part is the ``frozen_bn`` option:

* ``"fastai"`` (default, as the paper, which trained with fastai): BatchNorm layers stay trainable —
  affine weight/bias get gradients and running statistics keep updating;
* ``"stats"``: BN affine parameters are frozen, running statistics keep updating (plain PyTorch
  ``requires_grad_(False)`` behaviour);
* ``"eval"``: BN fully frozen — no gradients and the layers stay in eval mode (a strict linear probe).
"""

from __future__ import annotations

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


__all__ = ["FROZEN_BN_MODES", "STRATEGIES", "Strategy", "check_frozen_bn", "get_strategy", "list_strategies"]
