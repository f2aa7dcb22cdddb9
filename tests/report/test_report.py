"""build_report on a fake study whose cells point at two real tiny run directories: the files, the
HTML's tables/figures/links, sections that are absent with their reasons, and bad input."""

from __future__ import annotations

import importlib.resources
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_study import cell_id, make_study
from PIL import Image

from medcolor.errors import DataError
from medcolor.report import build_report
from medcolor.report.html import add_constant_fields
from medcolor.report.tables import TableOptions, table1
from medcolor.study.results import SCHEMA_VERSION, StudyError


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.src: list[str] = []
        self.href: list[str] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.src.append(a["src"])
        if tag == "a" and "href" in a:
            self.href.append(a["href"])
        if "id" in a:
            self.ids.add(a["id"])


def parse(path: Path) -> Links:
    p = Links()
    p.feed(path.read_text())
    return p


@pytest.fixture(scope="module")
def report(tmp_path_factory, real_runs) -> tuple[Path, Path]:
    study = make_study(tmp_path_factory.mktemp("study") / "fake", real_runs)
    out = tmp_path_factory.mktemp("report") / "html"
    index = build_report(study, out, n_boot=300)
    assert index == out / "index.html"
    return study, out


REAL_CM_ALL = cell_id("synthetic", "colorU", "color-module,all", None, 0)
REAL_CM = cell_id("synthetic", "pixelshuffle", "color-module", None, 0)


def test_report_files(report) -> None:
    _, out = report
    for f in ("index.html", "cells.html", "comparisons.csv", "tables/tables.md", "tables/tables.tex"):
        assert (out / f).is_file(), f
    for k in ("table1", "table2", "table3"):
        assert (out / "tables" / f"{k}.md").read_text().startswith("### Table")
        assert "\\begin{tabular}" in (out / "tables" / f"{k}.tex").read_text()
    for fig in ("fig4_colorized_synthetic.jpg", "fig5_labels_synthetic.png", "fig6_sizes.png"):
        with Image.open(out / "figures" / fig) as im:  # Fig. 4 (X-ray pixels) as JPEG, the plots as PNG
            assert im.format == ("JPEG" if fig.endswith(".jpg") else "PNG") and im.width > 500 and im.height > 250
    assert (out / "figures" / "fig6_curves.csv").is_file() and (out / "figures" / "fig6_differences.csv").is_file()
    real = out / "cells" / REAL_CM_ALL.replace("+", "_")
    assert (real / "history.png").is_file() and (real / "2-all_lr_find.png").is_file()
    assert (out / "cells" / REAL_CM.replace("+", "_") / "history.png").is_file()
    comp = pd.read_csv(out / "comparisons.csv")
    assert {"baseline", "diff", "ci_low", "ci_high", "p", "p_adj", "label"} <= set(comp.columns)
    assert set(comp["label"]) == {"Opacity", "Fine texture", "Enlarged heart", "mean"}
    # one adjusted p per comparison in the report: comparisons.csv holds the tables' own families, named
    assert {f.split(" (")[0] for f in comp["family"]} == {"Table I", "Table II", "Table III"}
    study, _ = report
    t1 = table1(add_constant_fields(pd.read_parquet(study / "results.parquet"), study), TableOptions())
    t1_rows = pd.DataFrame(t1.data).dropna(subset=["p_adj"])
    in_csv = comp[comp["family"].str.startswith("Table I (")]
    assert sorted(in_csv["p_adj"].dropna().round(12)) == sorted(t1_rows["p_adj"].round(12))
    assert set(t1_rows["family"]) == set(in_csv["family"])


def test_index_html_shows_tables_figures_and_links(report) -> None:
    study, out = report
    index = out / "index.html"
    html = index.read_text()
    links = parse(index)
    assert "script" not in links.tags and "http" not in " ".join(links.src + links.href)
    for src in links.src:  # every picture is a file next to the page
        assert (out / src).is_file(), src
    for href in links.href:
        if not href.startswith("#"):
            assert (out / href.split("#")[0]).is_file(), href
        else:
            assert href[1:] in links.ids, href
    assert "Not in this report" not in html
    for title in ("Table I.", "Table II.", "Table III.", "Fig. 4.", "Fig. 5.", "Fig. 6.", "Overview", "Cells"):
        assert title in html, title
    # the Table I numbers in the HTML are those of table1(), which the table tests check against scipy
    t1 = table1(pd.read_parquet(study / "results.parquet"), TableOptions(n_boot=300))
    for _, rows in t1.sections:
        for r in rows:
            assert f'<td class="r{" sig" if r[3].endswith("*") else ""}">{r[3]}</td>' in html
    assert "synthetic · Color Module → All" in html  # Table III's transfer source
    assert "fig6_sizes.png" in html and "(b) paired difference" in html
    # the cells list: every cell with a link to its section of cells.html
    cells = parse(out / "cells.html")
    ids = pd.read_parquet(study / "results.parquet")["cell"].unique()
    assert len(ids) == 63
    for c in ids:
        anchor = "cell-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", c)
        assert f"cells.html#{anchor}" in links.href and anchor in cells.ids
    for src in cells.src:
        assert (out / src).is_file(), src
    ctext = (out / "cells.html").read_text()
    assert "2-all_lr_find.png" in ctext and "1-color-module" in ctext
    assert "is not here" in ctext  # cells whose run directory this fake study does not have


def test_sections_absent_with_reasons(tmp_path: Path) -> None:
    study = make_study(tmp_path / "small", None, subsets=(None,), transfer=False, labels=("Opacity",))
    t = pd.read_parquet(study / "results.parquet").drop(columns=["data.subset"])
    t.to_parquet(study / "results.parquet")
    html = build_report(study, tmp_path / "out", n_boot=100).read_text()
    assert "Table I." in html and '<table class="study" id="table1">' in html
    reasons = re.findall(r'<p class="absent">Not in this report: (.*?)</p>', html)
    assert reasons == [
        "the study has a single label: Table II would repeat Table I.",
        "no cell transfers T or E from another cell of the study (no transfer grid field, or it is always empty).",
        "no cell has a learned colorization module to show (no colorizer.safetensors in the run directories: "
        "only baselines, or the run directories are not here).",
        "the study does not vary the training-set size (no data.subset grid field).",
        "the study does not vary the training-set size (no data.subset grid field).",
        "no cell&#39;s run directory holds a history.json (the run directories are not here).",
    ]
    assert not (tmp_path / "out" / "figures").exists() or not list((tmp_path / "out" / "figures").glob("*.png"))


def test_validation_auc_when_there_is_no_test_split(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", None, subsets=(None,), transfer=False, test_split=False)
    out = tmp_path / "out"
    html = build_report(study, out, n_boot=100).read_text()
    assert "the study has no test split: tables and figures use the validation AUC" in html
    t = pd.read_parquet(study / "results.parquet")
    v = t[(t["label"] == "mean") & (t["stages"] == "baseline")]["val_auc"].to_numpy()
    assert f"{v.mean() * 100:.1f} ± {v.std(ddof=1) * 100:.1f}" in (out / "tables" / "table1.md").read_text()


def test_bad_input(tmp_path: Path) -> None:
    """The report reads the table with study.results.read_results: its errors, unchanged."""
    with pytest.raises(StudyError, match=r"no results table at .*results\.parquet"):
        build_report(tmp_path, tmp_path / "out")
    study = make_study(tmp_path / "s", None, subsets=(None,), transfer=False)
    t = pd.read_parquet(study / "results.parquet")
    t.assign(schema_version=SCHEMA_VERSION + 1).to_parquet(study / "results.parquet")
    with pytest.raises(StudyError, match=f"newer than the version {SCHEMA_VERSION} this medcolor reads"):
        build_report(study, tmp_path / "out")
    t.assign(test_auc=np.nan).iloc[:0].to_parquet(study / "results.parquet")
    with pytest.raises(DataError, match="no cell of the study has finished"):
        build_report(study, tmp_path / "out")
    (study / "results.parquet").write_bytes(b"not parquet")
    with pytest.raises(StudyError, match="not a readable Parquet file"):
        build_report(study, tmp_path / "out")


def test_constant_fields_come_from_the_run_directories(tmp_path: Path, real_runs) -> None:
    """A study that varies only the seed has no stages/colorizer columns: read them from config.yaml."""
    rows = []
    for seed, name in enumerate(("colorU-cm-all", "pixelshuffle-cm")):
        for label in ("Opacity", "mean"):
            rows.append({"schema_version": 1, "study": "s", "cell": f"c{seed}", "trainer.seed": seed, "label": label,
                         "val_auc": 0.7, "test_auc": 0.7, "run_dir": str(real_runs[name])})  # fmt: skip
    t = add_constant_fields(pd.DataFrame(rows), tmp_path)
    per = t.drop_duplicates("cell").set_index("cell")
    assert per.loc["c0", "stages"] == "color-module,all" and per.loc["c1", "stages"] == "color-module"
    assert per.loc["c0", "model.colorizer"] == "colorU" and per.loc["c1", "model.backbone"] == "mobilenet_v2"
    assert per.loc["c0", "data.dataset"] == "synthetic"
    # a cell without a run directory: the column is left out rather than half filled
    rows.append({**rows[0], "cell": "c9", "run_dir": "nowhere"})
    assert "stages" not in add_constant_fields(pd.DataFrame(rows), tmp_path).columns


def test_package_reexports_and_templates() -> None:
    from medcolor.display import colorization_figure, plot_lr_find, side_by_side, to_display
    from medcolor.report import colorization_grid, markdown_table, plot_history

    assert all(callable(f) for f in (colorization_figure, colorization_grid, markdown_table, plot_history))
    assert all(callable(f) for f in (plot_lr_find, side_by_side))
    assert to_display(np.zeros((3, 4, 4))).shape == (4, 4, 3)
    templates = importlib.resources.files("medcolor.report") / "templates"
    assert {p.name for p in templates.iterdir()} >= {"base.html.j2", "index.html.j2", "cells.html.j2"}
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"medcolor.report" = ["templates/*.j2"]' in pyproject


def test_the_report_reads_files_only(tmp_path: Path, real_runs, monkeypatch) -> None:
    """Figs. 4 and 5 come from what training wrote into the run directories: building the report neither
    builds a dataset nor loads a network (both raise here)."""
    import medcolor.data.bundle
    import medcolor.inference
    import medcolor.io

    study = make_study(tmp_path / "study", real_runs)

    def forbidden(*args, **kwargs):
        raise AssertionError("the report must only read files")

    for module, name in ((medcolor.data.bundle, "build_data"), (medcolor.data.bundle, "make_dataset"),
                         (medcolor.io, "load_colorizer"), (medcolor.io, "load_model"),
                         (medcolor.inference, "colorize_images")):  # fmt: skip
        monkeypatch.setattr(module, name, forbidden)
    out = tmp_path / "html"
    build_report(study, out, n_boot=50)
    html = (out / "index.html").read_text()
    assert "fig4_colorized_synthetic.jpg" in html and "fig5_labels_synthetic.png" in html
    for fig in ("fig4_colorized_synthetic.jpg", "fig5_labels_synthetic.png"):
        with Image.open(out / "figures" / fig) as im:
            assert im.width > 500 and im.height > 250


def test_run_directories_of_an_older_medcolor_give_a_reason(tmp_path: Path, real_runs) -> None:
    """Without label_counts.json / colorized_samples.npz (runs written before training recorded them) the
    figures are absent and the page says which file is missing."""
    from medcolor.data.summary import LABEL_COUNTS_FILE
    from medcolor.display import SAMPLES_FILE

    study = make_study(tmp_path / "study", real_runs)
    for f in [*study.rglob(LABEL_COUNTS_FILE), *study.rglob(SAMPLES_FILE)]:
        f.unlink()
    out = tmp_path / "html"
    build_report(study, out, n_boot=50)
    html = (out / "index.html").read_text()
    reasons = " ".join(re.findall(r'<p class="absent">Not in this report: (.*?)</p>', html, flags=re.S))
    assert f"{LABEL_COUNTS_FILE} is missing" in reasons and f"{SAMPLES_FILE} is missing" in reasons
    assert not (out / "figures" / "fig4_colorized_synthetic.jpg").exists()
    assert not (out / "figures" / "fig5_labels_synthetic.png").exists()


def test_training_writes_what_the_report_reads(real_runs) -> None:
    """A run with a learned T records its label counts per split and a few validation images through T."""
    import json

    from medcolor.data.summary import LABEL_COUNTS_FILE, read_label_counts
    from medcolor.display import SAMPLES_FILE, read_colorized_samples

    run = real_runs["pixelshuffle-cm"]
    counts = read_label_counts(run / LABEL_COUNTS_FILE)
    data = json.loads((run / "data.json").read_text())
    assert set(counts) == {"train", "val", "test"}  # no subset: no separate full training split
    for split in ("train", "val", "test"):
        assert int(counts[split]["total"].iloc[0]) == data[split]
        assert list(counts[split].index) == data["label_names"]
    samples = read_colorized_samples(run / SAMPLES_FILE)
    assert samples.grays.shape == (6, 32, 32) and samples.colors.shape == (6, 32, 32, 3)
    assert len(samples.names) == 6 and samples.colors.min() >= 0 and samples.colors.max() <= 1
    assert samples.colors.std() > 0  # T's output, not a blank picture
