"""A subset larger than the training set names the flag and key that set it."""

from __future__ import annotations

import numpy as np
import pytest

from medcolor.data.splits import label_subset
from medcolor.errors import ConfigError


def test_subset_over_the_training_set_names_the_flag() -> None:
    labels = np.eye(3)[np.arange(30) % 3]
    with pytest.raises(ConfigError, match=r"--subset / data\.subset.*30 training samples"):
        label_subset(labels, count=10**12, seed=0)
