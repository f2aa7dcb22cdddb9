"""A tiny real study with an external test set, end to end: Kermany (32 px, 64 training images, 2 iterations)
trained with two arms x two seeds, each cell also tested on the NIH 1000 folder (its Pneumonia label mapped onto
Kermany's PNEUMONIA); the results table, ``study compare --test-set``, the report's Table I and a study document
carry the internal and the external set side by side with the drop."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from study_helpers import run_kermany_nih_study

from medcolor.cli import main
from medcolor.study.results import SCHEMA_VERSION, read_results

pytestmark = pytest.mark.slow

CELLS = """\
grid:
  trainer.seed: [0, 1]
cells:
  baseline: {stages: baseline, model.colorizer: replicate}
  color: {stages: color-module, model.colorizer: pixelshuffle}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory, shared_path, mobilenet_weights) -> Path:
    out, result = run_kermany_nih_study(
        tmp_path_factory.mktemp("external-study"),
        shared_path,
        mobilenet_weights,
        name="external-tiny",
        stage_defaults="{lr: 0.02, iterations: 2, val_every: 2}",
        body=CELLS,
    )
    assert result.ok and result.count("done") == 4
    return out


def test_results_table_has_a_row_per_cell_test_set_and_label(study: Path) -> None:
    df = read_results(study)
    assert (df["schema_version"] == SCHEMA_VERSION).all() and (df["device"] != "").all()
    assert all(sorted(set(g)) == ["internal", "nih"] for _, g in df.groupby("cell")["test_set"])
    assert len(df) == 4 * 2 * 2  # cells x test sets x (PNEUMONIA, mean)
    for _, r in df[df["test_set"] == "nih"].iterrows():
        m = json.loads((study / r.run_dir / "test_sets" / "nih" / "metrics.json").read_text())
        want = m["mean_auc"] if r.label == "mean" else m["auc"]["PNEUMONIA"]
        assert r.test_auc == pytest.approx(want) and m["n_samples"] == 1000
        own = df[(df["cell"] == r.cell) & (df["test_set"] == "internal") & (df["label"] == r.label)].iloc[0]
        assert r.val_auc == own.val_auc and r.test_auc != own.test_auc  # validation is the run's own


def test_compare_per_test_set(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df = read_results(study)
    assert main(["study", "compare", str(study), "baseline", "color-module", "--test-set", "all"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test set: internal\n") and "\ntest set: nih\n" in out
    nih = df[(df["test_set"] == "nih") & (df["label"] == "mean")]
    base = nih[nih["stages"] == "baseline"]["test_auc"].to_numpy()
    mean_std = f"{base.mean() * 100:.1f} ± {base.std(ddof=1) * 100:.1f}"
    assert mean_std in out.split("\ntest set: nih\n")[1]


def test_report_and_document_show_both_sets_and_the_drop(study: Path, tmp_path: Path) -> None:
    assert main(["study", "report", str(study), "-o", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "tables" / "table1.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Colorization module"))
    assert "Mean AUC · internal" in header and "Mean AUC · nih" in header and "Δ nih − internal" in header
    df = read_results(study)
    mean = df[df["label"] == "mean"]
    for stages, row_title in [("baseline", "Baseline"), ("color-module", "Color Module")]:
        rows = mean[mean["stages"] == stages]
        by_set = {s: rows[rows["test_set"] == s]["test_auc"] for s in ("internal", "nih")}
        drop = (by_set["nih"].mean() - by_set["internal"].mean()) * 100
        line = next(x for x in md.splitlines() if f"| {row_title} |" in x)
        assert line.rstrip(" |").endswith(f"{drop:+.1f}".replace("-", "−"))
        assert f"{by_set['nih'].mean() * 100:.1f} ± {by_set['nih'].std(ddof=1) * 100:.1f}" in line
    template = tmp_path / "doc.md.j2"
    template.write_text(
        "{{ s.test_sets | join(',') }}\n{{ s.table('table1', title=False) }}\n"
        "nih: {{ s.compare('baseline', 'stages=color-module', test_set='nih').d }}\n"
    )
    assert main(["study", "document", str(template), "--study", f"s={study}", "-o", str(tmp_path / "doc.md")]) == 0
    doc = (tmp_path / "doc.md").read_text()
    assert doc.startswith("internal,nih\n") and "Δ nih − internal" in doc
    nih = mean[mean["test_set"] == "nih"].pivot(index="trainer.seed", columns="stages", values="test_auc")
    diff = float(np.mean(nih["color-module"] - nih["baseline"])) * 100
    assert re.search(rf"nih: {re.escape(f'{diff:+.1f}'.replace('-', '−'))}|nih: {diff:+.1f}", doc), doc
