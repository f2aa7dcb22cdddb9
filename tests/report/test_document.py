"""``medcolor study document``: a Markdown template rendered with numbers from studies — comparisons equal
to :func:`compare`'s, BH over each family, arms' mean ± std, what run directories recorded, the report's
tables, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_study import cell_id, make_study

from medcolor.errors import ConfigError, DataError
from medcolor.report.document import parse_study_args, render_document
from medcolor.study.results import read_results
from medcolor.study.stats import adjust_bh, compare

BASE = "stages=baseline&data.subset=30"
CM = "stages=color-module&model.colorizer=colorU&data.subset=30"
PS = "stages=color-module&model.colorizer=pixelshuffle&data.subset=30"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return make_study(tmp_path_factory.mktemp("doc") / "fake", None)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "doc.md.j2"
    p.write_text(text)
    return p


def test_comparisons_match_compare_and_bh_is_per_family(study: Path, tmp_path: Path) -> None:
    tmpl = write(
        tmp_path,
        f"{{% set c1 = s.compare({BASE!r}, {CM!r}) %}}{{% set c2 = s.compare({BASE!r}, {PS!r}) %}}"
        f"{{% set c3 = s.compare({CM!r}, {PS!r}, family='other') %}}"
        "{{ c1.diff }}|{{ c1.p_value }}|{{ c1.p_adj }}|{{ c2.p_adj }}|{{ c3.p_adj }}|{{ c1.n }}\n"
        "{{ c1 }}\n{{ c1.a }} -> {{ c1.b }}: {{ c1.d }} (p {{ c1.p }}, BH {{ c1.p_bh }})\n"
        "{% for f in families %}{{ f.name }}={{ f.size }};{% endfor %}\n",
    )
    out = render_document(tmpl, {"s": study}, n_boot=200)
    line1, line2, line3, line4 = out.splitlines()
    diff, p, p1, p2, p3, n = line1.split("|")
    table = read_results(study)
    r1 = compare(table, BASE, CM, labels=["mean"], n_boot=200).iloc[0]
    r2 = compare(table, BASE, PS, labels=["mean"], n_boot=200).iloc[0]
    r3 = compare(table, CM, PS, labels=["mean"], n_boot=200).iloc[0]
    assert int(n) == r1["n"] == 3
    assert float(diff) == pytest.approx(r1["diff"]) and float(p) == pytest.approx(r1["p"])
    bh = adjust_bh([r1["p"], r2["p"]])  # c1 and c2 are the family "document"; c3 alone in "other"
    assert float(p1) == pytest.approx(bh[0]) and float(p2) == pytest.approx(bh[1])
    assert float(p3) == pytest.approx(r3["p"])
    assert float(p1) > r1["p"]  # adjusted with its family, not alone
    assert line2.startswith(f"{r1['diff'] * 100:+.1f} [") and "BH p = " in line2 and "(n = 3)" in line2
    assert line3.startswith(f"{r1['mean_a'] * 100:.1f} ± {r1['std_a'] * 100:.1f} -> ")
    assert line4 == "document=2;other=1;"


def test_single_pair_has_no_test_and_stays_out_of_the_family(study: Path, tmp_path: Path) -> None:
    tmpl = write(
        tmp_path,
        "{{ s.compare('stages=baseline&data.subset=30&trainer.seed=0', 'stages=baseline-all&data.subset=30"
        "&trainer.seed=0') }}\n{{ families[0].size }}",
    )
    out = render_document(tmpl, {"s": study}, n_boot=50)
    first, size = out.splitlines()
    assert first.endswith("(n = 1: no test)") and "p =" not in first and "[" not in first
    assert size == "0"


def test_arm_mean_std_and_errors(study: Path, tmp_path: Path) -> None:
    table = read_results(study)
    out = render_document(
        write(tmp_path, "{% set a = s.arm('" + CM + "') %}{{ a }}|{{ a.n }}|{{ a.mean }}"), {"s": study}
    )
    shown, n, mean = out.split("|")
    rows = table[
        (table["label"] == "mean") & (table["stages"] == "color-module") & (table["model.colorizer"] == "colorU")
    ]
    x = rows[rows["data.subset"] == 30]["test_auc"].to_numpy(float)
    assert int(n) == 3 and float(mean) == pytest.approx(x.mean())
    assert shown == f"{x.mean() * 100:.1f} ± {x.std(ddof=1) * 100:.1f}"
    with pytest.raises(
        ConfigError,
        match=r"several conditions \(data\.dataset: synthetic, target; data\.subset: 30, 60, none\); add "
        r"data\.dataset=\.\.\. and data\.subset=\.\.\. to it",
    ):
        render_document(write(tmp_path, "{{ s.arm('stages=baseline') }}"), {"s": study})


def test_tables_and_template_errors(study: Path, tmp_path: Path) -> None:
    out = render_document(
        write(tmp_path, "{{ s.table('table1') }}\n---\n{{ s.table('table3', title=False) }}"), {"s": study}, n_boot=50
    )
    t1, t3 = out.split("\n---\n")
    assert t1.startswith("### Table I.") and "| Baseline |" in t1.replace("| – | Baseline |", "| Baseline |")
    assert not t3.startswith("###") and "Last Layer" in t3
    only = render_document(write(tmp_path, "{{ s.table('table1', where='data.subset=30') }}"), {"s": study}, n_boot=50)
    assert "30 images" in only and "60 images" not in only and "60 images" in t1
    with pytest.raises(ConfigError, match="never run"):
        render_document(write(tmp_path, "{{ s.table('table1', where='data.subset=7') }}"), {"s": study})
    with pytest.raises(ConfigError, match="the tables are table1, table2, table3"):
        render_document(write(tmp_path, "{{ s.table('table4') }}"), {"s": study})
    with pytest.raises(ConfigError, match=r"'nope' is undefined; the studies are s"):
        render_document(write(tmp_path, "{{ nope.cells }}"), {"s": study})
    with pytest.raises(ConfigError, match=r"doc\.md\.j2, line 1"):
        render_document(write(tmp_path, "{% if %}"), {"s": study})
    with pytest.raises(ConfigError, match="no template at"):
        render_document(tmp_path / "missing.md.j2", {"s": study})
    with pytest.raises(ConfigError, match="cannot be a template variable"):
        render_document(write(tmp_path, "x"), {"my-study": study})
    with pytest.raises(ConfigError, match="never run"):
        render_document(write(tmp_path, "{{ s.compare('stages=baseline', 'stages=nothing') }}"), {"s": study})
    with pytest.raises(ConfigError, match="write NAME=DIR"):
        parse_study_args(["studies/x"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_study_args(["a=x", "a=y"])
    assert parse_study_args(["a=x", "b = y "]) == {"a": "x", "b": "y"}


def test_run_directories_lr_and_validation_history(tmp_path: Path, real_runs) -> None:
    study = make_study(tmp_path / "fake", real_runs)
    cell = cell_id("synthetic", "colorU", "color-module,all", None, 0)
    sel = "model.colorizer=colorU&stages=color-module,all&data.subset=none&trainer.seed=0"
    summary = json.loads((study / "cells" / cell / "summary.json").read_text())
    history = json.loads((Path(summary["stages"][1]["directory"]) / "history.json").read_text())
    out = render_document(
        write(tmp_path, "{% set a = s.arm('" + sel + "') %}{{ a.stage('lr', 1).fmt('{:.6e}') }}|"
              "{{ a.val_at(2, 1) }}|{{ a.stage('best_step') }}|{{ a.val_at(4, 1).range('{:.4f}') }}"),
        {"s": study},
    )  # fmt: skip
    lr, v2, best, v4 = out.split("|")
    assert float(lr) == pytest.approx(summary["stages"][1]["lr"], rel=1e-6)
    assert float(v2) == pytest.approx(next(h["val_mean_auc"] for h in history if h["step"] == 2), abs=1e-3)
    assert int(best) == summary["stages"][0]["best_step"]
    assert np.isfinite(float(v4))
    with pytest.raises(DataError, match="did not validate at step 3"):
        render_document(write(tmp_path, "{{ s.arm('" + sel + "').val_at(3) }}"), {"s": study})
    seed1 = sel.replace("seed=0", "seed=1")  # a cell without a run directory
    with pytest.raises(DataError, match=r"has no summary\.json"):
        render_document(write(tmp_path, "{{ s.arm('" + seed1 + "').stage('lr') }}"), {"s": study})


def test_cli_writes_the_document(study: Path, tmp_path: Path) -> None:
    from medcolor.cli import main

    tmpl = write(
        tmp_path,
        "# {{ s.cells }} cells {{ s.commits[0].commit }}:{{ s.commits[0].cells }}\n{{ s.compare('"
        + BASE
        + "', '"
        + CM
        + "').d }}\n",
    )
    out = tmp_path / "out" / "doc.md"
    assert main(["study", "document", str(tmpl), "--study", f"s={study}", "-o", str(out)]) == 0
    first, second = out.read_text().splitlines()
    n = read_results(study)["cell"].nunique()
    assert first == f"# {n} cells 0123abc:{n}"
    assert second.endswith("]")
    assert main(["study", "document", str(tmpl), "--study", "s", "-o", str(out)]) == 2


def test_commits_shorten_every_commit_of_a_resumed_cell(tmp_path: Path) -> None:
    """A cell resumed under other code (``git_commit`` "a + b") is listed as the short form of both commits,
    ``+dirty`` kept, apart from the cells of one commit (it used to show only the first commit's 7 digits)."""
    study = make_study(tmp_path / "fake", None)
    table = pd.read_parquet(study / "results.parquet")
    full = ["1cf3a447e3365ec55e71b17f588b0e9252258b05", "82ed4d935fbd06182fc794100e3dc794713c2f91+dirty"]
    first = table["cell"] == table["cell"].iloc[0]
    table.loc[first, "git_commit"] = " + ".join(full)
    table.to_parquet(study / "results.parquet")
    out = render_document(
        write(tmp_path, "{% for c in s.commits %}{{ c.commit }}:{{ c.cells }};{% endfor %}"), {"s": study}
    )
    n = table["cell"].nunique()
    assert out.strip() == f"0123abc:{n - 1};1cf3a44 + 82ed4d9+dirty:1;"


def test_the_reproduction_template_parses_and_names_its_studies() -> None:
    """docs/reproduction-112px.md.j2 (the 112-px record) is Jinja2 that this module can load, and it uses the two
    studies its header command passes (rendering it needs the studies, which are not in the repository)."""
    import jinja2
    from jinja2 import meta

    from medcolor.report.document import _environment

    path = Path(__file__).resolve().parents[2] / "docs" / "reproduction-112px.md.j2"
    env = _environment(path.parent)
    ast = env.parse(path.read_text())
    used = meta.find_undeclared_variables(ast)
    assert used == {"ablations", "transfer", "families"}
    assert "--study ablations=studies/ablations --study transfer=studies/transfer" in path.read_text()
    assert isinstance(env.get_template(path.name), jinja2.Template)


def test_the_external_template_parses_and_names_its_study() -> None:
    """docs/reproduction.md.j2 (issue 18, item 4; rendered on a real tiny study in
    tests/study/test_external_document.py) loads and uses the one study its header command passes."""
    import jinja2
    from jinja2 import meta

    from medcolor.report.document import _environment

    path = Path(__file__).resolve().parents[2] / "docs" / "reproduction.md.j2"
    env = _environment(path.parent)
    text = path.read_text()
    used = meta.find_undeclared_variables(env.parse(text))
    # names set inside loops count as undeclared for jinja2.meta: each of those is set by the template itself
    assert {"external", "families"} <= used
    assert all(f"set {name} " in text or f"set {name}." in text for name in used - {"external", "families"})
    assert "--study external=studies/external -o docs/reproduction.md" in text
    assert isinstance(env.get_template(path.name), jinja2.Template)


def test_a_filtered_table_drops_the_labels_of_the_cells_left_out() -> None:
    from medcolor.report.document import _drop_empty_label_columns
    from medcolor.report.render import StudyTable

    rows = [["–", "Baseline", "3", "70.0", "n/a"], ["ColorU", "Color Module", "3", "71.0", "n/a"]]
    t = StudyTable("table2", "Table II. x", ["Colorizer", "Strategy", "n", "A", "B"], [("", rows)])
    out = _drop_empty_label_columns(t)
    assert out.columns == ["Colorizer", "Strategy", "n", "A"]
    assert out.sections[0][1][1] == ["ColorU", "Color Module", "3", "71.0"]


def test_one_comparison_however_spelt_is_one_member_of_its_family(study: Path, tmp_path: Path) -> None:
    swapped = "&".join(reversed(BASE.split("&")))
    tmpl = write(
        tmp_path,
        f"{{{{ s.compare({BASE!r}, {CM!r}).p_bh }}}}|{{{{ s.compare({swapped!r}, {CM!r}).p_bh }}}}|"
        "{% for f in families %}{{ f.name }}={{ f.size }}{% endfor %}",
    )
    first, second, fams = render_document(tmpl, {"s": study}, n_boot=50).split("|")
    assert first == second and fams == "document=1"
    table = read_results(study)
    assert float(first) == pytest.approx(compare(table, BASE, CM, labels=["mean"], n_boot=50).iloc[0]["p"], abs=1e-3)


def test_raw_adjusted_p_in_the_first_pass_and_bad_tests(study: Path, tmp_path: Path) -> None:
    tmpl = write(
        tmp_path, f"{{% set c = s.compare({BASE!r}, {CM!r}) %}}{{{{ '%.4f'|format(c.p_adj) }}}} {{{{ c.sig }}}}"
    )
    p_adj, sig = render_document(tmpl, {"s": study}, n_boot=50).split()
    assert float(p_adj) == pytest.approx(compare(read_results(study), BASE, CM, labels=["mean"]).iloc[0]["p"], abs=1e-4)
    assert sig in ("True", "False")
    with pytest.raises(ConfigError, match="test must be one of t, wilcoxon, got 'T'"):
        render_document(write(tmp_path, f"{{{{ s.compare({BASE!r}, {CM!r}, test='T') }}}}"), {"s": study})


def test_comparisons_chosen_by_their_own_p_values_are_refused(study: Path, tmp_path: Path) -> None:
    """A comparison asked for in the first pass only would sit in a BH family without being shown."""
    tmpl = write(
        tmp_path,
        f"{{% set c = s.compare({BASE!r}, {CM!r}) %}}{{% if not c.sig and c.p_bh == '…' %}}"
        f"{{{{ s.compare({BASE!r}, {PS!r}) }}}}{{% endif %}}{{{{ c }}}}",
    )
    with pytest.raises(ConfigError, match="second rendering asked for other comparisons than the first"):
        render_document(tmpl, {"s": study}, n_boot=50)


def test_template_mistakes_name_the_line_and_never_leak_a_traceback(study: Path, tmp_path: Path) -> None:
    cases = {
        "line 2: TypeError": "ok\n{{ s.compare('stages=baseline') }}",
        "line 1: ZeroDivisionError": "{{ 1 / 0 }}",
        "line 3: ": "\n\n{{ s.arm('" + CM + "').stage('lr') }}",  # a DataError: no run directory here
    }
    for want, text in cases.items():
        with pytest.raises((ConfigError, DataError), match=want):
            render_document(write(tmp_path, text), {"s": study}, n_boot=50)
    for reserved in ("families", "studies", "for"):
        with pytest.raises(ConfigError, match="cannot be a template variable"):
            render_document(write(tmp_path, "x"), {reserved: study})
    (tmp_path / "latin1.md.j2").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        render_document(tmp_path / "latin1.md.j2", {"s": study})


@pytest.mark.parametrize(
    "payload",
    [
        "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}",
        "{{ s.__class__.__init__.__globals__['os'].system('touch PWNED') }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ joiner.__init__.__globals__.__builtins__['open']('PWNED', 'w').write('x') }}",
    ],
)
def test_a_template_cannot_run_code(study: Path, tmp_path: Path, monkeypatch, payload: str) -> None:
    """Templates (someone else's study document) are sandboxed: reaching Python internals is a clear
    ConfigError naming the template and line, and nothing is created."""
    monkeypatch.chdir(tmp_path)
    tmpl = write(tmp_path, "# results\n" + payload + "\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ConfigError, match=r"doc\.md\.j2, line 2: the template tried something .* sandboxed"):
        render_document(tmpl, {"s": study}, n_boot=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (study / "PWNED").exists()


def test_the_reports_own_templates_are_sandboxed() -> None:
    from jinja2.sandbox import SandboxedEnvironment

    from medcolor.report.html import _env

    assert isinstance(_env(), SandboxedEnvironment)
    with pytest.raises(Exception, match="unsafe"):
        _env().from_string("{{ cycler.__init__.__globals__ }}").render()


def test_cli_document_output_that_is_a_folder_is_named_as_the_flag(study: Path, tmp_path: Path, capsys) -> None:
    from medcolor.cli import main

    tmpl = write(tmp_path, "# {{ s.cells }} cells\n")
    rc = main(["study", "document", str(tmpl), "--study", f"s={study}", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "--output" in err and "is a folder" in err and ".tmp" not in err


def test_study_compare_defaults_to_the_reports_family(study: Path, capsys) -> None:
    """`study compare` of an arm against its baseline shows the adjusted p of the report's table that shows
    that test (Table I for the mean), naming the family; --family comparison adjusts over its own rows."""
    from medcolor.cli import main
    from medcolor.report.html import report_families

    rc = main(["study", "compare", str(study), BASE, CM])
    text = capsys.readouterr().out
    assert rc == 0 and "family: " in text and "Table I (" in text
    rep = report_families(study, read_results(study), "test_auc", "t")
    own = compare(read_results(study), BASE, CM)
    mean = own[own["label"] == "mean"].iloc[0]
    in_report = rep[(rep["label"] == "mean") & (rep["pairs"] == mean["pairs"])]
    assert len(in_report) == 1 and in_report.iloc[0]["family"].startswith("Table I (")
    shown = f"{in_report.iloc[0]['p_adj']:.3f}" if in_report.iloc[0]["p_adj"] >= 0.001 else "<0.001"
    mean_line = next(line for line in text.splitlines() if line.startswith("| mean |"))
    assert mean_line.split("|")[-2].strip().rstrip(" *") == shown
    assert main(["study", "compare", str(study), BASE, CM, "--family", "comparison"]) == 0
    text = capsys.readouterr().out
    assert "family: this comparison (" in text and "Table I" not in text


@pytest.fixture(scope="module")
def planned_study(tmp_path_factory) -> Path:
    """The fake study (size 30, one external set "ext") with a plan: one group per arm, a fourth repeat of
    colorU color-module not finished, and a group "lut" of which no cell has finished."""
    from fake_study import ARMS

    d = make_study(tmp_path_factory.mktemp("planned") / "fake", None, subsets=(30,), transfer=False,
                   external={"ext": -0.06})  # fmt: skip
    cells = []
    for colorizer, stages in [*ARMS, ("lut", "color-module")]:
        for seed in range(4 if (colorizer, stages) == ("colorU", "color-module") else 3):
            group = f"{colorizer}-{stages}"
            cells.append({"id": cell_id("synthetic", colorizer, stages, 30, seed), "group": group,
                          "values": {"trainer.seed": seed}, "config": {}})  # fmt: skip
    plan = {"study": "fake-study", "columns": ["trainer.seed"], "warnings": [], "cells": cells}
    (d / "plan.json").write_text(json.dumps(plan))
    return d


def test_groups_missing_cells_best_and_paired_groups(planned_study: Path, tmp_path: Path) -> None:
    tmpl = write(
        tmp_path,
        "{{ s.planned }}|{{ s.missing | join(',') }}|{{ s.groups | length }}\n"
        "{% set g = s.group('colorU-color-module') %}{{ g.n }}/{{ g.planned }}|{{ g.missing | join(',') }}|"
        "{{ g.val.mean }}|{{ g.on('ext').mean }}|{{ g.drop('ext').mean }}|{{ g.auc }}|{{ g.n_train }}\n"
        "{% set l = s.group('lut-color-module') %}{{ l.n }}/{{ l.planned }}|{{ l.auc }}|{{ l.drop('ext') }}\n"
        "{{ s.best(['replicate-baseline', 'colorU-color-module', 'lut-color-module']).selector }}|"
        "{{ s.best(['lut-color-module']) }}\n"
        "{% set c = s.compare_groups('replicate-baseline', 'colorU-color-module', test_set='ext') %}"
        "{{ c.diff }}|{{ c.p_value }}|{{ c.n }}|{{ c.family }}\n"
        "{{ s.compare_groups('replicate-baseline', 'colorU-color-module', min_pairs=4) }}\n"
        "{{ s.compare_groups('replicate-baseline', 'lut-color-module') }}\n",
    )
    out = render_document(tmpl, {"s": planned_study}, n_boot=200).splitlines()
    four = cell_id("synthetic", "colorU", "color-module", 30, 3)
    lut = [cell_id("synthetic", "lut", "color-module", 30, s) for s in range(3)]
    assert out[0] == f"{6 * 3 + 1 + 3}|{','.join([four, *lut])}|7"
    table = read_results(planned_study)
    mean = table[table["label"] == "mean"]
    cm = mean[(mean["model.colorizer"] == "colorU") & (mean["stages"] == "color-module")]
    internal, ext = (cm[cm["test_set"] == s].sort_values("cell") for s in ("internal", "ext"))
    n, missing, val, ext_mean, drop, auc, n_train = out[1].split("|")
    assert (n, missing) == ("3/4", four)
    assert float(val) == pytest.approx(internal["val_auc"].mean())
    assert float(ext_mean) == pytest.approx(ext["test_auc"].mean())
    assert float(drop) == pytest.approx((ext["test_auc"].to_numpy() - internal["test_auc"].to_numpy()).mean())
    t = internal["test_auc"].to_numpy()
    lo, hi = internal["test_ci_low"].min(), internal["test_ci_high"].max()
    assert auc == f"{t.mean() * 100:.1f} ± {t.std(ddof=1) * 100:.1f} [{lo * 100:.1f}, {hi * 100:.1f}]"
    assert n_train == "30, 30, 30"
    assert out[2] == "0/3|n/a|n/a"  # planned, none finished
    vals = {
        g: mean[(mean["test_set"] == "internal") & (mean["model.colorizer"] == c) & (mean["stages"] == st)][
            "val_auc"
        ].mean()
        for g, c, st in [
            ("replicate-baseline", "replicate", "baseline"),
            ("colorU-color-module", "colorU", "color-module"),
        ]
    }
    assert out[3] == f"{max(vals, key=lambda g: vals[g])}|None"
    ref = compare(table, "stages=baseline&data.subset=30", CM, labels=["mean"], n_boot=200, test_set="ext").iloc[0]
    diff, p, n, family = out[4].split("|")
    assert float(diff) == pytest.approx(ref["diff"]) and float(p) == pytest.approx(ref["p"])
    assert (n, family) == ("3", "document · ext")
    assert out[5].endswith("(n = 3: no test)")  # fewer pairs than min_pairs
    assert out[6] == "None"  # no pair yet


def test_choice_ranks_on_the_seeds_every_arm_has_finished(planned_study: Path, tmp_path: Path) -> None:
    """An arm ahead on a seed the others have not run is not chosen for it: with seeds 1 and 2 of the baseline
    gone, both arms are ranked on seed 0 only; the arms' own numbers still use all their finished seeds."""
    import shutil

    import pandas as pd

    d = tmp_path / "study"
    shutil.copytree(planned_study, d)
    table = pd.read_parquet(d / "results.parquet")
    base = (table["model.colorizer"] == "replicate") & (table["stages"] == "baseline")
    table = table[~(base & table["trainer.seed"].astype(str).isin(["1", "2"]))]
    table.to_parquet(d / "results.parquet", index=False)
    groups = ["replicate-baseline", "colorU-color-module", "lut-color-module"]
    tmpl = write(
        tmp_path,
        "{% set c = s.choice(" + repr(groups) + ") %}{{ c.best.selector }}|{{ c.runner_up.selector }}|"
        "{{ c.repeats }}|{{ c.val['replicate-baseline'] }}|{{ c.val['colorU-color-module'] }}|"
        "{{ s.group('colorU-color-module').n }}|{{ s.best(" + repr(groups) + ").selector }}|"
        "{{ s.choice(['lut-color-module']) }}|{{ s.choice(" + repr(groups) + ", test_set='ext').best.selector }}\n",
    )
    out = render_document(tmpl, {"s": d}, n_boot=50).strip().split("|")
    best, second, repeats, v_base, v_cm, n_cm, best_again, none, best_ext = out
    mean = table[(table["label"] == "mean") & (table["test_set"] == "internal")]
    seed0 = mean[mean["trainer.seed"].astype(str) == "0"]
    want = {
        "replicate-baseline": seed0[base.reindex(seed0.index)]["val_auc"].mean(),
        "colorU-color-module": seed0[(seed0["model.colorizer"] == "colorU") & (seed0["stages"] == "color-module")][
            "val_auc"
        ].mean(),
    }
    assert float(v_base) == pytest.approx(want["replicate-baseline"])
    assert float(v_cm) == pytest.approx(want["colorU-color-module"])
    assert repeats == "1" and n_cm == "3" and none == "None"
    order = sorted(want, key=lambda g: -want[g])
    assert (best, second) == tuple(order) and best_again == best == best_ext  # chosen on validation only


def test_devices_count_the_cells_per_device_and_precision(tmp_path: Path) -> None:
    d = make_study(tmp_path / "s", None, subsets=(30,), transfer=False)
    t = read_results(d)
    cells = sorted(t["cell"].unique())
    older = set(cells[:2])  # two cells from before the table recorded the device (a migrated version-2 row: "")
    amd = set(cells[2:3])
    t["device"] = ["" if c in older else "AMD EPYC" if c in amd else "Intel Xeon" for c in t["cell"]]
    t["precision"] = ["" if c in older else "bf16-mixed" for c in t["cell"]]
    t.to_parquet(d / "results.parquet")
    tmpl = "{% for x in s.devices %}{{ x.device }}/{{ x.precision }}={{ x.cells }};{% endfor %}"
    got = render_document(write(tmp_path, tmpl), {"s": d})
    want = {("Intel Xeon", "bf16-mixed"): len(cells) - 3, ("not recorded", "not recorded"): 2}
    want[("AMD EPYC", "bf16-mixed")] = 1
    assert got.endswith(";") and len(cells) > 3
    parts = [p.split("=") for p in got[:-1].split(";")]
    assert {tuple(k.split("/")): int(n) for k, n in parts} == want
    assert [int(n) for _, n in parts] == sorted((int(n) for _, n in parts), reverse=True)  # most cells first
