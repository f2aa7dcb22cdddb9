"""Patient-level splits and label-stratified subsets (the paper's Fig. 5 dataset sizes).

* :func:`patient_split`: whole patients per split, sizes (in images) close to the fractions.
* :func:`check_no_leak`: raises when a patient is in more than one split.
* :func:`label_subset`: a subset whose positive / negative / uncertain / blank count of **every** label is
  within one sample of ``fraction x`` the full-set count.
* :func:`subset_draws`: several independent draws per size.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from medcolor.errors import ConfigError, DataError
from medcolor.utils import derive_seed

__all__ = ["STATES", "check_no_leak", "label_states", "label_subset", "patient_split", "subset_draws"]

#: Raw label states, in the order of :func:`label_states` codes.
STATES = ("positive", "negative", "uncertain", "blank")


# ============================================================================================ patient splits


def patient_split(
    patient_ids: Sequence[str] | np.ndarray,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Split sample indices by patient.

    ``fractions`` (default ``{"train": .8, "val": .1, "test": .1}``) must be >= 0 and sum to 1; leave a split
    out by not naming it.  Patients are shuffled with ``seed`` and cut into consecutive groups whose image
    counts are as close to the fractions as whole patients allow (each cut at the patient boundary nearest
    the target; every split with a positive fraction gets at least one patient when there are enough).
    Returns ``{split: sorted sample indices}``; the same seed gives the same split.
    """
    if fractions is None:
        fractions = {"train": 0.8, "val": 0.1, "test": 0.1}
    if not fractions:
        raise ConfigError("fractions is empty; e.g. {'train': 0.8, 'val': 0.1, 'test': 0.1}")
    names = list(fractions)
    fr = np.asarray([float(fractions[n]) for n in names])
    if (fr < 0).any() or not np.isfinite(fr).all():
        raise ConfigError(f"split fractions must be >= 0, got {dict(fractions)}")
    if abs(fr.sum() - 1.0) > 1e-6:
        raise ConfigError(
            f"split fractions must sum to 1, got {dict(fractions)} (sum {fr.sum():.6g}); leave a "
            "split out by not naming it"
        )
    pids = np.asarray(patient_ids).astype(str)
    if pids.ndim != 1 or len(pids) == 0:
        raise DataError("patient_split needs a non-empty 1-D array of patient ids")
    uniq, inverse, counts = np.unique(pids, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    cum = np.concatenate([[0], np.cumsum(counts[order])])  # images before patient position k
    n_pat = len(uniq)
    targets = np.cumsum(fr)[:-1] * len(pids)
    positive = (fr > 0).astype(np.int64)
    feasible = n_pat >= positive.sum()
    cuts = [0]
    for k, t in enumerate(targets):
        c = int(np.argmin(np.abs(cum - t)))
        lo = cuts[-1] + (int(positive[k]) if feasible else 0)
        hi = n_pat - (int(positive[k + 1 :].sum()) if feasible else 0)
        cuts.append(min(max(c, lo), hi))
    cuts.append(n_pat)
    out: dict[str, np.ndarray] = {}
    for k, n in enumerate(names):
        chosen = np.zeros(n_pat, dtype=bool)
        chosen[order[cuts[k] : cuts[k + 1]]] = True
        out[n] = np.flatnonzero(chosen[inverse])
    return out


def check_no_leak(splits: Mapping[str, Sequence[int] | np.ndarray], patient_ids: Sequence[str] | np.ndarray) -> None:
    """Raise :class:`DataError` if any patient has samples in more than one split, naming up to 5 such
    patients and their splits."""
    pids = np.asarray(patient_ids).astype(str)
    where: dict[str, list[str]] = {}
    for name, idx in splits.items():
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(pids)):
            raise DataError(f"split {name!r} holds indices outside 0..{len(pids) - 1}")
        for p in np.unique(pids[idx]):
            where.setdefault(str(p), []).append(str(name))
    leaks = {p: s for p, s in where.items() if len(s) > 1}
    if leaks:
        shown = "; ".join(f"{p!r} in {', '.join(s)}" for p, s in list(leaks.items())[:5])
        raise DataError(
            f"{len(leaks)} patient(s) appear in more than one split ({shown}"
            f"{'; ...' if len(leaks) > 5 else ''}); split by patient, e.g. with "
            "medcolor.data.patient_split(dataset.patient_ids)"
        )


# ============================================================================================ label subsets


def label_states(raw_labels: np.ndarray) -> np.ndarray:
    """Raw labels (1, 0, -1, NaN) -> int8 state codes 0 positive, 1 negative, 2 uncertain, 3 blank."""
    raw = np.asarray(raw_labels, dtype=np.float64)
    if raw.ndim == 1:
        raw = raw[:, None]
    if raw.ndim != 2:
        raise DataError(f"raw_labels must be (N, L), got shape {raw.shape}")
    codes = np.full(raw.shape, -1, dtype=np.int8)
    codes[raw == 1] = 0
    codes[raw == 0] = 1
    codes[raw == -1] = 2
    codes[np.isnan(raw)] = 3
    if (codes < 0).any():
        bad = raw[codes < 0][0]
        raise DataError(f"raw_labels hold {bad!r}; expected 1, 0, -1 or NaN")
    return codes


def _largest_remainder(quota: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    base = np.floor(quota).astype(np.int64)
    rest = total - int(base.sum())
    if rest > 0:
        frac = quota - base
        # random tie-break among equal remainders
        order = np.lexsort((rng.random(len(quota)), -frac))
        base[order[:rest]] += 1
    return base


def label_subset(
    raw_labels: np.ndarray,
    fraction: float | None = None,
    count: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Sorted indices of a subset that keeps each label's state proportions.

    Pass ``fraction`` in (0, 1] (e.g. 0.001 ... 1.0; ``n = round(fraction * N)``) or an absolute ``count``.
    For every label and state (positive / negative / uncertain / blank), the subset count is within one
    sample of ``n / N x`` its full-set count.  Method: stratify on the joint state pattern of all labels,
    allot ``n`` to the patterns by largest remainder, then move single samples between patterns while
    that lowers the squared deviation of the marginals, and draw the samples of each pattern at random
    (``seed``).  Same seed -> same subset.
    """
    codes = label_states(raw_labels)
    n_all, n_lab = codes.shape
    n = _subset_size(n_all, fraction, count)
    rng = np.random.default_rng(seed)
    if n == n_all:
        return np.arange(n_all)

    pat_codes, inverse, sizes = _label_patterns(codes)
    n_pat = len(sizes)
    onehot = np.zeros((n_pat, n_lab * 4), dtype=np.float64)  # pattern -> (label, state) indicator
    onehot[np.arange(n_pat)[:, None], np.arange(n_lab)[None, :] * 4 + pat_codes] = 1.0
    target = (sizes @ onehot) * (n / n_all)

    alloc = _largest_remainder(sizes * (n / n_all), n, rng)
    alloc = _balance(alloc, sizes, onehot, target, pat_codes, n_lab)
    worst = float(np.abs(alloc @ onehot - target).max())
    if worst > 1.0 + 1e-9:  # not seen on CheXpert / ChestX-ray14; say so rather than fail
        warnings.warn(
            f"label_subset: a label-state count is {worst:.2f} samples from its proportional target (more than 1)",
            stacklevel=2,
        )
    return _draw_patterns(alloc, sizes, inverse, rng)


def _subset_size(n_all: int, fraction: float | None, count: int | None) -> int:
    """The number of samples of :func:`label_subset`'s subset, from exactly one of ``fraction`` and ``count``."""
    if n_all == 0:
        raise DataError("label_subset needs at least one sample")
    if (fraction is None) == (count is None):
        raise ConfigError("label_subset needs exactly one of fraction= or count=")
    smallest = f"the smallest valid fraction is {0.5 / n_all:.3g} (1 of {n_all} samples) or count=1"
    if fraction is not None:
        if not 0 < float(fraction) <= 1:
            raise ConfigError(f"fraction must be in (0, 1], got {fraction!r}")
        n = int(np.floor(float(fraction) * n_all + 0.5))
        if n < 1:
            raise DataError(f"fraction={fraction} of {n_all} samples is an empty subset; {smallest}")
        return n
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise ConfigError(f"count must be an int, got {count!r}")
    n = int(count)
    if n < 1:
        raise DataError(f"count={count} is an empty subset; {smallest}")
    if n > n_all:
        raise ConfigError(
            f"the training subset (--subset / data.subset) of {count} images exceeds the {n_all} "
            f"training samples: give at most {n_all} or a fraction in (0, 1]"
        )
    return n


def _label_patterns(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct joint state patterns of all labels (one row of codes each), each sample's pattern and
    the number of samples per pattern."""
    n_all, n_lab = codes.shape
    if n_lab <= 31:
        key = np.zeros(n_all, dtype=np.int64)
        for j in range(n_lab):
            key = key * 4 + codes[:, j]
        patterns, inverse, sizes = np.unique(key, return_inverse=True, return_counts=True)
        pat_codes = np.stack([(patterns // 4 ** (n_lab - 1 - j)) % 4 for j in range(n_lab)], axis=1)
    else:
        pat_codes, inverse, sizes = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return pat_codes, inverse.reshape(-1), sizes


def _draw_patterns(alloc: np.ndarray, sizes: np.ndarray, inverse: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices: ``alloc[p]`` samples drawn at random from the samples of each pattern ``p``."""
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    chosen = []
    for p in np.flatnonzero(alloc):
        members = order[starts[p] : starts[p + 1]]
        chosen.append(rng.choice(members, size=int(alloc[p]), replace=False) if alloc[p] < sizes[p] else members)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _balance(
    alloc: np.ndarray,
    sizes: np.ndarray,
    onehot: np.ndarray,
    target: np.ndarray,
    pat_codes: np.ndarray,
    n_lab: int,
    candidates: int = 64,
    max_moves: int = 1_000_000,
) -> np.ndarray:
    """Move single samples between patterns while the sum of squared marginal deviations drops.

    Moving one sample from pattern a to pattern b changes that sum by ``2 (g_b - g_a + hamming(a, b))``,
    where ``g_p`` is the sum over labels of the deviation at p's state; so the best moves are found among
    the patterns with the largest removable g and the smallest addable g.
    """
    alloc = alloc.copy()
    dev = alloc @ onehot - target
    flat = np.arange(n_lab)[None, :] * 4 + pat_codes  # (P, L) index of each pattern's (label, state)
    for _ in range(max_moves):
        if np.abs(dev).max() <= 1.0 + 1e-9:
            break
        g = dev[flat].sum(axis=1)
        g_rem = np.where(alloc > 0, g, -np.inf)
        g_add = np.where(alloc < sizes, g, np.inf)
        k = min(candidates, len(g))
        a_set = np.argpartition(-g_rem, k - 1)[:k]
        b_set = np.argpartition(g_add, k - 1)[:k]
        a_set = a_set[np.isfinite(g_rem[a_set])]
        b_set = b_set[np.isfinite(g_add[b_set])]
        if not len(a_set) or not len(b_set):
            break
        ham = (pat_codes[a_set][:, None, :] != pat_codes[b_set][None, :, :]).sum(axis=2)
        delta = (g[b_set][None, :] - g[a_set][:, None] + ham).astype(np.float64)
        delta[ham == 0] = np.inf
        best = int(np.argmin(delta))
        ia, ib = divmod(best, len(b_set))
        if delta[ia, ib] >= -1e-9:
            break
        a, b = a_set[ia], b_set[ib]
        alloc[a] -= 1
        alloc[b] += 1
        np.subtract.at(dev, flat[a], 1.0)
        np.add.at(dev, flat[b], 1.0)
    return alloc


def subset_draws(
    raw_labels: np.ndarray,
    sizes: Sequence[float | int],
    draws: int = 3,
    seed: int = 0,
) -> dict[tuple[float | int, int], np.ndarray]:
    """``{(size, draw): indices}`` for each size (a float fraction in (0, 1] or an int count) and
    ``draw`` in ``range(draws)``, each an independent :func:`label_subset` with a seed derived from
    ``(seed, draw, size)``."""
    out: dict[tuple[float | int, int], np.ndarray] = {}
    for size in sizes:
        is_count = isinstance(size, (int, np.integer)) and not isinstance(size, bool)
        tag = int(size) if is_count else round(float(size) * 1e9)
        for d in range(int(draws)):
            s = derive_seed(seed, d, tag, int(is_count))
            if is_count:
                out[(size, d)] = label_subset(raw_labels, count=int(size), seed=s)
            else:
                out[(size, d)] = label_subset(raw_labels, fraction=float(size), seed=s)
    return out
