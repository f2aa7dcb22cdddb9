"""``test_sets:`` of a run configuration: named external test sets (:class:`TestSetConfig`), evaluated by
:mod:`medcolor.testsets` after training; ``operating:`` (:class:`OperatingConfig`): how the operating points of the
internal and every external test set are chosen on validation data (:mod:`medcolor.operating`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from medcolor.config.values import MAX_SIZE, Section, opt
from medcolor.errors import OptionError

#: a test set's name: a slug (it names the folder ``RUN/test_sets/<name>`` and the study column ``test_set``)
TEST_SET_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,59}"
#: the ``test_set`` of a run's own held-out split (study results); no named set may take it
INTERNAL_TEST_SET = "internal"


@dataclass
class TestSetConfig(Section):
    """An external test set (``test_sets.<name>``): where its images and labels are, and how its labels map onto
    the run's.  Size and normalisation are the run's; the set is only evaluated, never trained on."""

    __test__: ClassVar[bool] = False  # not a pytest test class
    _key: ClassVar[str] = "test_sets.*"
    #: dataset registry name (chexpert, chestxray14, mura, csv, folder, synthetic)
    dataset: str = "folder"
    #: the dataset's image folder
    root: str | None = opt(path=True)
    #: the label file (default: the dataset's official file in root)
    csv: str | None = opt(path=True)
    #: dataset options, e.g. patient_regex=kermany, category_column=finding
    options: dict[str, Any] = opt(dict)
    #: official split of the dataset to test on (None: every row)
    split: str | None = None
    #: rows whose image is missing: error; skip; present (the folder holds only part of the dataset)
    on_missing: Literal["error", "skip", "present"] = opt("error", strict=True)
    #: images are decoded and reduced so their short side is this (default: the run's data.size)
    load_size: int | None = opt(None, at_least=8, at_most=MAX_SIZE)
    #: the run's label -> the set's label (e.g. {Pneumonia: PNEUMONIA}); a label of the same name (any case)
    #: maps by itself; run labels that map to nothing are left out of the set's mean (summary: left_out)
    labels: dict[str, str] = opt(dict)
    #: images shared with the run's training/validation data (same file content, or same patient id of the
    #: same dataset kind): false refuses the set, true warns and records the count in its metrics.json
    allow_overlap: bool = False

    def _check(self, key: str, where: str | None) -> None:
        for k, v in self.labels.items():
            if not isinstance(k, str) or not isinstance(v, str) or not k.strip() or not v.strip():
                raise OptionError(f"{key}.labels", f"maps a run label to a set label (words), got {k!r}: {v!r}", where)


def check_test_set_names(names: Iterable[str], where: str | None = None) -> None:
    """Every test set name is a slug and not :data:`INTERNAL_TEST_SET`."""
    for name in names:
        if not re.fullmatch(TEST_SET_NAME, name) or name.lower() == INTERNAL_TEST_SET:
            raise OptionError(
                "test_sets",
                f"the test set name {name!r} is not a slug: use letters, digits, '_', '.', '-' (starting with a "
                f"letter or digit, at most 60) and not {INTERNAL_TEST_SET!r} (the run's own test split)",
                where,
            )


#: ``operating.threshold``: youden, or sensitivity/specificity = a target in (0, 1] (medcolor.operating parses it)
THRESHOLD_RULE = r"youden|(sensitivity|specificity)\s*[=:]\s*(\d*\.?\d+(e-?\d+)?)"


@dataclass
class OperatingConfig(Section):
    """How the run's operating points are chosen on its validation data (``RUN/operating_points.json`` and each
    external set's): the threshold rule of every label and optional temperature scaling."""

    _key: ClassVar[str] = "operating"
    #: the decision threshold of each label, chosen on validation data: youden (Youden's J), sensitivity=0.9 (the
    #: highest specificity at that sensitivity) or specificity=0.95 (the highest sensitivity at that specificity)
    threshold: str = "youden"
    #: fit a temperature per label on the validation predictions before thresholds and calibration (recorded)
    temperature: bool = False

    def _check(self, key: str, where: str | None) -> None:
        rule = str(self.threshold).strip().lower()
        m = re.fullmatch(THRESHOLD_RULE, rule)
        if m is None or (m.group(2) is not None and not 0 < float(m.group(2)) <= 1):
            raise OptionError(
                f"{key}.threshold",
                f"must be youden, sensitivity=<target> or specificity=<target> with a target in (0, 1], e.g. "
                f"sensitivity=0.9; got {self.threshold!r}",
                where,
            )
        object.__setattr__(self, "threshold", re.sub(r"\s*[=:]\s*", "=", rule))
