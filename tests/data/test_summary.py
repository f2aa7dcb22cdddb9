"""label_counts and the Fig. 5-style plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcolor.data import label_counts, label_subset, plot_label_counts
from medcolor.errors import ConfigError


def test_label_counts_from_array() -> None:
    raw = np.array([[1, 0], [0, -1], [np.nan, 1], [-1, np.nan], [1, 1]], dtype=np.float32)
    df = label_counts(raw, ["A", "B"])
    assert list(df.columns) == ["positive", "negative", "uncertain", "blank", "total"]
    assert df.loc["A"].tolist() == [2, 1, 1, 1, 5] and df.loc["B"].tolist() == [2, 1, 1, 1, 5]
    assert all(str(t).startswith("int") for t in df.dtypes)
    assert label_counts(raw).index.tolist() == ["label_0", "label_1"]
    with pytest.raises(ConfigError, match="3 label names for 2"):
        label_counts(raw, ["A", "B", "C"])


def test_label_counts_from_dataset_and_plots(chexpert_all, tmp_path: Path) -> None:
    full = chexpert_all.label_counts()
    assert full.index.tolist() == chexpert_all.label_names and (full["total"] == len(chexpert_all)).all()
    sub = label_counts(
        chexpert_all.raw_labels[label_subset(chexpert_all.raw_labels, fraction=0.001)],
        chexpert_all.label_names,
    )
    one = plot_label_counts(full, tmp_path / "full.png", title="CheXpert train")
    two = plot_label_counts({"full set": full, "0.1% subset": sub}, tmp_path / "figs" / "fig5.png")
    for p in (one, two):
        assert p.is_file()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300
    with Image.open(two) as a, Image.open(one) as b:
        assert a.size[0] > b.size[0]  # two panels side by side
    assert not list(tmp_path.glob("**/*.tmp"))  # written atomically, nothing left over


def test_dataset_stats_on_nih_1000(nih_1000) -> None:
    """``medcolor stats`` in Python: the label counts, a subset's counts, the pixel mean/std of a sample and
    the decode check each equal what their own functions give on the 1,000 NIH images."""
    from medcolor.config import Count
    from medcolor.data import dataset_stats
    from medcolor.data.transforms import compute_mean_std

    s = dataset_stats(nih_1000, subset=Count(100), seed=3, mean_std=True, max_images=40, check=True)
    assert (s.name, s.images, s.patients) == (nih_1000.name, 1000, len(set(nih_1000.patient_ids)))
    assert s.counts.equals(label_counts(nih_1000))
    idx = label_subset(nih_1000.raw_labels, count=100, seed=3)
    assert s.subset_images == 100 and s.subset_counts.equals(label_counts(nih_1000.subset(idx)))
    assert (s.mean, s.std) == compute_mean_std(nih_1000, max_images=40, seed=3) and s.sampled == 40
    assert s.unreadable is not None and s.unreadable.empty
    assert list(s.tables()) == ["full set", "subset (100 images)"]
    bare = dataset_stats(nih_1000)
    assert bare.subset_counts is None and bare.mean is None and bare.unreadable is None
    assert list(bare.tables()) == ["full set"]
