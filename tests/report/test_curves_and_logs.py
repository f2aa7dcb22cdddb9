"""The report's validation curves (one figure per section, every arm overlaid, stages continuing the x axis), its
links to the runs' experiment logs, and the demo's REPORT.md (numbers with thousands separators, links that
resolve) — on the fake study whose cells point at the two real tiny run directories of ``conftest.real_runs``."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_study import cell_id, make_study
from PIL import Image

from medcolor.report import build_report
from medcolor.report.cells_page import log_links
from medcolor.report.curves import CURVES_FILE, cell_curve, mean_curves

CM_ALL = cell_id("synthetic", "colorU", "color-module,all", None, 0)  # 2 stages: color-module, then all
CM = cell_id("synthetic", "pixelshuffle", "color-module", None, 0)
SHIFT = {1: 0.1, 2: 0.2}  # seeds 1 and 2: copies of seed 0's run with these added to every validation AUC


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.href: list[str] = []
        self.src: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.href.append(a["href"])
        if tag == "img":
            self.src.append(a["src"])


def links(path: Path) -> Links:
    p = Links()
    p.feed(path.read_text())
    return p


@pytest.fixture(scope="module")
def study_report(tmp_path_factory, real_runs) -> tuple[Path, Path]:
    """The fake study with the real runs as seed 0 and two shifted copies of each as seeds 1 and 2."""
    study = make_study(tmp_path_factory.mktemp("curves") / "study", real_runs)
    for cell in (CM_ALL, CM):
        for seed, shift in SHIFT.items():
            dst = study / "cells" / cell.replace("-s0", f"-s{seed}")
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(study / "cells" / cell, dst)
            for h in dst.glob("*/history.json"):
                rows = json.loads(h.read_text())
                h.write_text(json.dumps([{**r, "val_mean_auc": r["val_mean_auc"] + shift} for r in rows]))
    out = tmp_path_factory.mktemp("curves") / "html"
    build_report(study, out, n_boot=50)
    return study, out


def test_stages_continue_the_iteration_axis(real_runs) -> None:
    run = real_runs["colorU-cm-all"]
    summary = json.loads((run / "summary.json").read_text())
    first, second = (
        json.loads((run / f"{i}-{s}" / "history.json").read_text()) for i, s in ((1, "color-module"), (2, "all"))
    )
    curve = cell_curve(run)
    n1 = summary["stages"][0]["total_steps"]
    assert list(curve["stage"]) == ["1-color-module"] * len(first) + ["2-all"] * len(second)
    assert list(curve["iteration"]) == [h["step"] for h in first] + [n1 + h["step"] for h in second]
    assert list(curve["val_mean_auc"]) == [h["val_mean_auc"] for h in first + second]
    assert curve["iteration"].is_monotonic_increasing


def test_validation_curves_one_figure_per_section_with_every_arm(study_report) -> None:
    study, out = study_report
    curves = pd.read_csv(out / "figures" / CURVES_FILE)
    assert set(curves["section"]) == {"Dataset: synthetic · Training subset: full"}  # the cells with a history
    assert set(curves["arm"]) == {"ColorU Color Module → All", "PixelShuffle Color Module"}
    assert curves["cell"].nunique() == 6
    # the per-cell rows are the histories as training wrote them, seed 1/2 shifted
    for seed in (0, *SHIFT):
        cell = CM_ALL.replace("-s0", f"-s{seed}")
        mine = curves[curves["cell"] == cell]
        expected = cell_curve(study / "cells" / cell)
        assert np.allclose(mine["val_mean_auc"], expected["val_mean_auc"])
        assert list(mine["iteration"]) == list(expected["iteration"])
    # the thick line: the mean over the three repeats at each iteration
    means = mean_curves(curves)
    cm_all = means[means["arm"] == "ColorU Color Module → All"].set_index("iteration")
    seed0 = cell_curve(study / "cells" / CM_ALL).set_index("iteration")["val_mean_auc"]
    assert list(cm_all.index) == list(seed0.index) and set(cm_all["n"]) == {3}
    assert np.allclose(cm_all["mean"], seed0 + np.mean([0.0, *SHIFT.values()]))
    # one PNG + SVG per section, embedded in the page with its own navigation entry
    png = out / "figures" / "val_curves_synthetic_none.png"  # the section's values, as Fig. 4's file names
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 500 and im.height > 300
    assert png.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
    index = (out / "index.html").read_text()
    assert '<a href="#curves">Validation curves</a>' in index and '<h2 id="curves">' in index
    page = links(out / "index.html")
    assert (
        png.relative_to(out).as_posix() in page.src and png.with_suffix(".svg").relative_to(out).as_posix() in page.href
    )
    assert "57 of 63 cells have no history.json here" in index


def test_without_histories_the_section_says_why(tmp_path: Path) -> None:
    study = make_study(tmp_path / "study", None, subsets=(None,), transfer=False)
    html = build_report(study, tmp_path / "out", n_boot=20).read_text()
    assert "Not in this report: no cell&#39;s run directory holds a history.json" in html
    assert not (tmp_path / "out" / "figures" / CURVES_FILE).exists()


def test_cells_page_links_every_stage_log(study_report, real_runs) -> None:
    _, out = study_report
    cells = out / "cells.html"
    hrefs = [h for h in links(cells).href if not h.startswith("#")]
    for h in hrefs:  # every link of the page resolves, the logs' included
        assert (out / h.split("#")[0]).exists(), h
    logs = [h for h in hrefs if h.endswith("metrics.csv")]
    slug = CM_ALL.replace("+", "_")
    assert f"cells/{slug}/1-color-module_version_0_metrics.csv" in logs
    assert f"cells/{slug}/2-all_version_0_metrics.csv" in logs
    assert len(logs) == 2 * 3 + 1 * 3  # 3 repeats of a 2-stage and of a 1-stage run
    src = real_runs["colorU-cm-all"] / "2-all" / "logs" / "csv" / "version_0" / "metrics.csv"
    assert (out / f"cells/{slug}/2-all_version_0_metrics.csv").read_bytes() == src.read_bytes()
    assert "val/mean_auc" in src.read_text().splitlines()[0]  # Lightning's CSV log, with the validation AUC


def test_tensorboard_and_mlflow_folders_are_linked_where_they_are(real_runs, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r"
    shutil.copytree(real_runs["pixelshuffle-cm"], run)
    (run / "1-color-module" / "logs" / "tensorboard" / "version_0").mkdir(parents=True)
    (run / "mlruns").mkdir()
    out = tmp_path / "report"
    found = log_links(run, out / "cells" / "r", out)
    assert [x["text"] for x in found] == [
        "CSV 1-color-module version_0",
        "TensorBoard 1-color-module version_0",
        "MLflow",
    ]
    for x in found:
        assert not Path(x["href"]).is_absolute() and (out / x["href"]).exists(), x
    assert (out / found[1]["href"]).resolve() == (
        run / "1-color-module" / "logs" / "tensorboard" / "version_0"
    ).resolve()
    assert found[2]["title"].startswith("mlflow ui --backend-store-uri")


def test_demo_report_numbers_and_log_links(real_runs, tmp_path: Path) -> None:
    """REPORT.md printed 2226434; every count now has its thousands separators, and it links each run's logs."""
    from medcolor import demo
    from medcolor.training.rundir import read_run

    out = tmp_path / "demo"
    for name, src in (("baseline", "pixelshuffle-cm"), ("color-module", "colorU-cm-all")):
        shutil.copytree(real_runs[src], out / name)
    results = {name: read_run(out / name) for name in ("baseline", "color-module")}
    table = [demo._table_row(name, r) for name, r in results.items()]
    report = demo._write_report(
        out, results, table, data=None, weights=None, backbone="mobilenet_v2", colorizer="colorU", epochs=12, lr=0.02
    )
    text = report.read_text()
    for name, r in results.items():
        n = r.stages[-1].trainable_parameters
        assert n >= 1000 and f"| {name} | {n:,} |" in text
    prose = re.sub(r"\]\([^)]*\)", "]", text).replace("Odena et al., 2016", "")  # file names and a year: no counts
    assert re.findall(r"(?<![\w.,/-])\d{4,}(?![\w,])", prose) == []  # no count of 4+ digits without a separator
    targets = re.findall(r"\]\(([^)]+)\)", text)
    for t in targets:
        assert not Path(t).is_absolute() and (out / t).is_file(), t
    logs = [t for t in targets if t.endswith("metrics.csv")]
    assert logs == [
        "baseline/1-color-module/logs/csv/version_0/metrics.csv",
        "color-module/1-color-module/logs/csv/version_0/metrics.csv",
        "color-module/2-all/logs/csv/version_0/metrics.csv",
    ]
