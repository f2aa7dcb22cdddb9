"""The synthetic set as a registered dataset: the same images, labels and ids as reading its labels.csv with
CsvDataset (what the demo did before it was registered), and the scratch folder build_data gives it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from medcolor.config import DataConfig
from medcolor.data import CsvDataset, SyntheticXrays, create_dataset, list_datasets
from medcolor.data.bundle import build_data, make_dataset
from medcolor.data.datasets import synthetic as synthetic_module
from medcolor.errors import ConfigError, DataError, OptionError

SMALL = {"n": 16, "image_size": 32, "seed": 5}


def test_synthetic_is_its_labels_csv_read_as_csv(tmp_path: Path) -> None:
    assert "synthetic" in list_datasets()
    ds = create_dataset("synthetic", tmp_path / "s", **SMALL)
    assert isinstance(ds, SyntheticXrays) and ds.name == "synthetic" and ds.patients_known
    assert ds.label_names == list(synthetic_module.LABELS) and ds.csv == tmp_path / "s" / "labels.csv"
    ref = CsvDataset(tmp_path / "s", tmp_path / "s" / "labels.csv", **synthetic_module.CSV_OPTIONS)
    assert len(ds) == len(ref) == 16
    for field in ("labels", "raw_labels", "patient_ids", "study_ids"):
        np.testing.assert_array_equal(getattr(ds, field), getattr(ref, field))
    assert ds.paths == ref.paths
    assert ds.meta.equals(ref.meta)
    for i in (0, 15):
        np.testing.assert_array_equal(ds.load_image(i), ref.load_image(i))
    # a second construction reuses the files; a different configuration regenerates them
    before = (tmp_path / "s" / "images" / "00000.png").read_bytes()
    again = SyntheticXrays(tmp_path / "s", **SMALL)
    np.testing.assert_array_equal(again.labels, ds.labels)
    other = SyntheticXrays(tmp_path / "s", **{**SMALL, "seed": 6})
    assert (tmp_path / "s" / "images" / "00000.png").read_bytes() != before
    assert not np.array_equal(other.labels, ds.labels)


def test_synthetic_needs_a_folder_and_takes_no_csv(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a directory"):
        create_dataset("synthetic", **SMALL)
    with pytest.raises(ConfigError, match="csv is not used"):
        create_dataset("synthetic", tmp_path, tmp_path / "labels.csv", **SMALL)
    with pytest.raises(ConfigError, match="with label_columns"):
        create_dataset("synthetic", tmp_path, labels=["Opacity"], **SMALL)


def test_old_import_path() -> None:
    from medcolor.data.datasets.synthetic import CSV_OPTIONS, LABELS, make_synthetic_xrays

    assert make_synthetic_xrays is synthetic_module.make_synthetic_xrays
    assert CSV_OPTIONS is synthetic_module.CSV_OPTIONS and LABELS is synthetic_module.LABELS


def test_build_data_gives_a_generated_dataset_its_scratch_folder(tmp_path: Path) -> None:
    cfg = DataConfig(dataset="synthetic", size=32, val=0.25, test=0.25, options=dict(SMALL))
    with pytest.raises(ConfigError, match="needs a directory"):
        make_dataset(cfg)
    bundle = build_data(cfg, synthetic_dir=tmp_path / "scratch")
    assert (tmp_path / "scratch" / "labels.csv").is_file()
    assert bundle.info["dataset_rows"] == 16 and bundle.label_names == list(synthetic_module.LABELS)
    assert all(str(p).startswith(str((tmp_path / "scratch").resolve())) for p in bundle.train.paths)
    # data.root wins over the scratch folder
    cfg.root = str(tmp_path / "chosen")
    assert make_dataset(cfg, synthetic_dir=tmp_path / "scratch").root == (tmp_path / "chosen").resolve()
    # a dataset that reads files is never pointed at the scratch folder
    with pytest.raises(DataError, match="FolderDataset needs root"):
        make_dataset(DataConfig(dataset="folder"), synthetic_dir=tmp_path / "scratch")


#: every generator option out of its bounds (the command line's `--option image_size=0` was a PIL traceback)
BAD_OPTIONS = [
    ("image_size=0", "data.options.image_size): must be between 16 and 8,192, got 0"),
    ("image_size=100000", "data.options.image_size): must be between 16 and 8,192"),
    ("image_size=2.5", "data.options.image_size): must be an integer"),
    ("n=0", "data.options.n): must be between 10 and"),
    ("n=abc", "data.options.n): must be an integer, got 'abc'"),
    ("seed=-1", "data.options.seed): must be between 0 and"),
    ("prevalence=0", "data.options.prevalence): must be between 0 and 1 (both excluded)"),
    ("prevalence=nan", "data.options.prevalence): must be a number"),
    ("knobs=3", "data.options.knobs): must be a mapping"),
    ("knobs={noise: -1}", "data.options.knobs.noise): must be between 0 and 1"),
    ("knobs={band: [0.6, 0.5]}", "data.options.knobs.band): must be [low, high] with low <= high"),
    ("knobs={texture_periods: [1, 4]}", "data.options.knobs.texture_periods): must be between 2 and 64"),
    ("knobs={bogus: 1}", "data.options.knobs.bogus): is no knob; valid knobs: texture_amp"),
]


@pytest.mark.parametrize("option, message", BAD_OPTIONS)
def test_every_synthetic_option_out_of_bounds_is_an_option_error_before_any_file(tmp_path, capsys, option, message):
    from medcolor.cli import main

    root = tmp_path / "s"
    for argv in (["train", "--dry-run", "-o", str(tmp_path / "run")], ["stats", "synthetic"]):
        dataset = ["--dataset", "synthetic"] if argv[0] == "train" else []
        rc = main([*argv, *dataset, "--root", str(root), "--option", option])
        err = capsys.readouterr().err
        assert rc == 2 and f"--option ({message}" in err and "Traceback" not in err, err
    assert not root.exists()
    key, value = option.split("=", 1)
    with pytest.raises(OptionError, match=r"data\.options\." + key):  # the Python API: the same check
        SyntheticXrays.check_options(yaml.safe_load(f"{key}: {value}"))


def test_the_smallest_synthetic_set_in_bounds_is_made(tmp_path):
    ds = create_dataset("synthetic", tmp_path / "s", n=10, image_size=16, prevalence=0.5)
    assert len(ds) == 10 and ds.load_image(0).shape[-2:] == (16, 16)
