"""LR suggestion rules on recorded, real LR range tests (tests/fixtures/lr_curves/*.json).

The curves were recorded with ``medcolor train ... --lr find`` (100-step sweeps from 1e-6 to 1, MobileNetV2 with
the ImageNet weights): colorU + color-module on all Kermany training images and on 1000 of them (224 px),
baseline-all on 1000 Kermany images, colorU + color-module on NIH-1000 (64 px).  Their plots show the smoothed loss
descending from ~2e-5 to 3e-2..8e-2 (Kermany) and from 1e-4 to 3e-3 (NIH), then diverging.  Lightning's
steepest-gradient point fell at 1.8e-5..7.2e-5 on all four: at the top of the curve, before any descent.

Each fixture keeps Lightning's smoothed loss as recorded (``lightning_loss``) and, as ``loss``, the same curve with
the moving average's bias corrected (what :func:`smooth_losses` gives and the rules now read).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medcolor.training.lr_find import LR_RULES, suggest_lr
from medcolor.training.lr_suggest import diverged, smooth_losses

CURVES = Path(__file__).parents[1] / "fixtures" / "lr_curves"

# where each recorded curve descends (read off its plot): a usable suggestion lies inside
DESCENT = {
    "kermany-all-cm": (2e-4, 3e-2),
    "kermany-1000-cm": (2e-4, 3e-2),
    "kermany-1000-baseline-all": (2e-4, 3e-2),
    "nih-cm": (1e-4, 3e-3),
}


def _curve(name: str) -> dict:
    return json.loads((CURVES / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(DESCENT))
@pytest.mark.parametrize("rule", ["valley", "minimum"])
def test_robust_rules_land_in_the_descent_of_real_curves(name: str, rule: str) -> None:
    c = _curve(name)
    lo, hi = DESCENT[name]
    lr = suggest_lr(c["lr"], c["loss"], rule)
    assert lr is not None and lo <= lr <= hi, (name, rule, lr)
    # Lightning's steepest-gradient suggestion recorded with the curve sat before the descent
    assert c["lightning_steepest"] < lo


def test_valley_is_the_middle_of_the_longest_descent() -> None:
    lrs = np.logspace(-6, 0, 61)
    # a rise (the moving average warming up, as in the real curves), a long clean descent from 1e-4 to 1e-2
    # with a short noisy dip before it, then divergence
    loss = np.where(lrs < 1e-4, 1.0, np.where(lrs <= 1e-2, 1.0 - (np.log10(lrs) + 4) * 0.2, 0.6 + (np.log10(lrs) + 2)))
    loss[:20] = np.linspace(0.8, 1.05, 20)
    loss[12:15] = [0.9, 0.85, 0.9]
    lr = suggest_lr(lrs, loss, "valley", skip_begin=0)
    assert 5e-4 <= lr <= 2e-3  # the middle (in log-lr) of 1e-4..1e-2 is 1e-3


def test_minimum_rule_is_a_tenth_of_the_lowest_loss() -> None:
    lrs = np.logspace(-6, 0, 61)
    loss = (np.log10(lrs) + 2) ** 2  # lowest at 1e-2
    assert suggest_lr(lrs, loss, "minimum") == pytest.approx(1e-3, rel=1e-6)


def test_curve_is_cut_at_the_first_non_finite_loss() -> None:
    lrs = np.logspace(-6, 0, 61)
    loss = (np.log10(lrs) + 2) ** 2
    loss[45] = np.nan
    loss[46:] = -5.0  # garbage after divergence must be ignored
    assert suggest_lr(lrs, loss, "minimum") == pytest.approx(1e-3, rel=1e-6)


@pytest.mark.parametrize("rule", LR_RULES)
def test_no_suggestion_from_a_rising_or_short_curve(rule: str) -> None:
    lrs = np.logspace(-6, 0, 40)
    assert suggest_lr(lrs, np.linspace(1.0, 3.0, 40), rule) is None
    assert suggest_lr(lrs[:12], np.linspace(1.0, 0.5, 12), rule) is None


def test_unknown_rule_is_named() -> None:
    with pytest.raises(ValueError, match="unknown LR rule 'fastest'"):
        suggest_lr([1e-3, 1e-2], [1.0, 0.5], "fastest")


@pytest.mark.parametrize("name", sorted(DESCENT))
def test_robust_rules_also_work_on_lightnings_biased_curves(name: str) -> None:
    c = _curve(name)
    lo, hi = DESCENT[name]
    for rule in ("valley", "minimum"):
        lr = suggest_lr(c["lr"], c["lightning_loss"], rule)
        assert lr is not None and lo <= lr <= hi, (name, rule, lr)


def test_smoothing_starts_at_the_first_loss() -> None:
    # Lightning divides step k's moving average by 1 - beta**(k + 2): its curves start at about half the loss
    # and seem to rise; the corrected average of a constant loss is that constant from the first step
    assert smooth_losses([0.7] * 50) == pytest.approx([0.7] * 50)
    raw = [0.7, 0.6, float("nan"), 0.5]
    out = smooth_losses(raw)
    assert out[0] == 0.7 and 0.6 < out[1] < 0.7 and np.isnan(out[2:]).all()


@pytest.mark.parametrize("name", sorted(DESCENT))
def test_recorded_curves_start_near_the_loss_of_a_new_classifier(name: str) -> None:
    c = _curve(name)
    assert 0.6 < c["loss"][0] < 0.9 and c["lightning_loss"][0] < 0.45  # BCE of a fresh C is ~ln 2


def test_sweep_stops_when_the_smoothed_loss_diverges() -> None:
    assert not diverged(smooth_losses([0.7, 0.6, 0.5, 0.6, 0.8]))
    assert diverged(smooth_losses([0.7, 0.6, 0.5] + [50.0] * 3))
    assert diverged(smooth_losses([0.7, 0.6, float("inf")]))
