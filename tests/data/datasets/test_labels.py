"""Label files (medcolor.data.datasets.labels): line numbers, raw label values, missing columns, and the
messages naming file, row and column.  The policies on the real CheXpert file: test_chexpert.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcolor.data import CheXpert, CsvDataset
from medcolor.errors import DataError


def test_bad_label_value_names_file_row_column(tmp_path: Path, tiny_chexpert) -> None:
    blank = "," * 13
    rows = [
        f"CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,F,68,Frontal,AP,1.0{blank}",
        "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,M,50,Frontal,PA,,,,,,2.0,,,,,,,,",
    ]
    _, csv = tiny_chexpert(tmp_path, rows)
    with pytest.raises(DataError) as e:
        CheXpert(csv=csv, views="all")
    msg = str(e.value)
    assert str(csv) in msg and "row 3" in msg and "'Edema'" in msg and "2.0" in msg and "-1 (uncertain)" in msg
    rows[1] = rows[1].replace("2.0", "yes")
    _, csv = tiny_chexpert(tmp_path, rows)
    with pytest.raises(DataError, match=r"row 3, column 'Edema' holds 'yes'"):
        CheXpert(csv=csv, views="all")


def test_csv_without_expected_columns(tmp_path: Path) -> None:
    csv = tmp_path / "train.csv"
    csv.write_text("Path,Atelectasis,Cardiomegaly\nx/train/patient1/study1/a.jpg,1,0\n")
    with pytest.raises(DataError) as e:
        CheXpert(csv=csv, views="all")
    msg = str(e.value)
    assert str(csv) in msg and "'Consolidation'" in msg and "'Edema'" in msg and "'Pleural Effusion'" in msg
    with pytest.raises(DataError, match="label file not found"):
        CheXpert(csv=tmp_path / "nope.csv")


def test_source_row_with_multiline_quoted_field(tmp_path: Path, gray_png) -> None:
    gray_png(tmp_path / "a.png")
    gray_png(tmp_path / "b.png")
    csv = tmp_path / "l.csv"
    csv.write_text('path,note,y\na.png,"two\nlines",1\n\nb.png,x,7\n')
    with pytest.raises(DataError, match=r"row 5, column 'y' holds 7"):
        CsvDataset(tmp_path, csv, label_columns=["y"], patient_column="path")
