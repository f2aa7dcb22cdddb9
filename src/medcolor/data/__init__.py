"""The data layer: readers, datasets, splits, transforms, cache."""

from __future__ import annotations

from medcolor.data.cache import ImageCache
from medcolor.data.datasets import (
    CHEXPERT_LABELS,
    MURA,
    NIH_LABELS,
    NIH_PAPER_LABELS,
    PAPER_LABELS,
    PAPER_POLICY,
    ChestXray14,
    CheXpert,
    CsvDataset,
    DuplicateRowsWarning,
    FolderDataset,
    MissingImagesWarning,
    SyntheticXrays,
    XRayDataset,
    apply_policy,
    create_dataset,
    list_datasets,
    read_label_csv,
)
from medcolor.data.readers import (
    IMAGE_EXTENSIONS,
    find_images,
    image_bit_depth,
    load_reduced,
    read_image,
    reduce_image,
    to_float,
)
from medcolor.data.splits import check_no_leak, label_subset, patient_split, subset_draws
from medcolor.data.summary import DatasetStats, check_images, dataset_stats, label_counts, plot_label_counts

__all__ = [
    "CHEXPERT_LABELS",
    "IMAGE_EXTENSIONS",
    "MURA",
    "NIH_LABELS",
    "NIH_PAPER_LABELS",
    "PAPER_LABELS",
    "PAPER_POLICY",
    "CheXpert",
    "ChestXray14",
    "CsvDataset",
    "DatasetStats",
    "DuplicateRowsWarning",
    "FolderDataset",
    "ImageCache",
    "MissingImagesWarning",
    "SyntheticXrays",
    "XRayDataset",
    "apply_policy",
    "check_images",
    "check_no_leak",
    "create_dataset",
    "dataset_stats",
    "find_images",
    "image_bit_depth",
    "label_counts",
    "label_subset",
    "list_datasets",
    "load_reduced",
    "patient_split",
    "plot_label_counts",
    "read_image",
    "read_label_csv",
    "reduce_image",
    "subset_draws",
    "to_float",
]
