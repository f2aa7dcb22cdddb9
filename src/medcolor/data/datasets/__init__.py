"""X-ray datasets with one constructor shape and one set of public fields (in the spirit of torchxrayvision).

==================  =============================================================================
module              its one job
==================  =============================================================================
``labels``          label files (line numbers for messages), raw labels, the uncertainty policies
                    (U-Ones / U-Zeros / U-Ignore) and the paper's five labels and per-label policy
``checks``          the row checks at construction: paths inside root, duplicates, missing images
``base``            :class:`XRayDataset` (the public fields, loading, subsets, cache),
                    the registry, :func:`create_dataset`, :func:`list_datasets`
``chexpert``        CheXpert (Irvin et al. 2019)
``chestxray14``     ChestX-ray14 (NIH)
``mura``            MURA v1.1 (study ids for study-level evaluation)
``csv``             any CSV label file (label columns or a categorical column)
``folder``          one sub-folder per class (Kermany et al.)
``synthetic``       the generated X-ray-like set of the demo and the tests
==================  =============================================================================

Build any of them by name with :func:`create_dataset`; the fields every dataset exposes are listed in
:mod:`medcolor.data.datasets.base`.  Study-level aggregation (MURA) lives in :mod:`medcolor.evaluation`.
"""

from __future__ import annotations

from medcolor.data.datasets.base import (
    DATASETS,
    ON_DUPLICATE,
    ON_MISSING,
    DatasetOptions,
    DuplicateRowsWarning,
    MissingImagesWarning,
    XRayDataset,
    create_dataset,
    dataset_options,
    list_datasets,
)
from medcolor.data.datasets.labels import PAPER_LABELS, PAPER_POLICY, POLICIES, apply_policy, read_label_csv

# The import order is the registration order, i.e. the order of list_datasets().
# isort: off
from medcolor.data.datasets.chexpert import CHEXPERT_LABELS, CheXpert
from medcolor.data.datasets.chestxray14 import NIH_LABELS, NIH_PAPER_LABELS, ChestXray14
from medcolor.data.datasets.mura import MURA, MURA_BODY_PARTS
from medcolor.data.datasets.csv import CsvDataset
from medcolor.data.datasets.folder import PATIENT_REGEX_PRESETS, FolderDataset
from medcolor.data.datasets.synthetic import SyntheticXrays
# isort: on

__all__ = [
    "CHEXPERT_LABELS",
    "DATASETS",
    "MURA",
    "MURA_BODY_PARTS",
    "NIH_LABELS",
    "NIH_PAPER_LABELS",
    "ON_DUPLICATE",
    "ON_MISSING",
    "PAPER_LABELS",
    "PAPER_POLICY",
    "PATIENT_REGEX_PRESETS",
    "POLICIES",
    "CheXpert",
    "ChestXray14",
    "CsvDataset",
    "DatasetOptions",
    "DuplicateRowsWarning",
    "FolderDataset",
    "MissingImagesWarning",
    "SyntheticXrays",
    "XRayDataset",
    "apply_policy",
    "create_dataset",
    "dataset_options",
    "list_datasets",
    "read_label_csv",
]
