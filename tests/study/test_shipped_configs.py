"""The Kermany configurations medcolor ships (``configs/examples/kermany-best-*.yaml``) are the arms the
external-validity study chooses on validation AUC (``docs/reproduction.md``'s rule: the highest mean over the
seeds every arm has finished), read from the cells kept in ``experiments/external/study``: when a newly kept
seed changes the choice, this fails until the shipped configuration follows it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from medcolor.report.document import render_document
from medcolor.study.layout import rebuild_table

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "experiments" / "external" / "study"
#: the candidates of each shipped configuration: MobileNetV2, all 4,172 training images (the study's groups)
SHIPPED = {
    "kermany-best-frozen.yaml": ["gray", "colorU", "lut", "graystart"],
    "kermany-best-finetuned.yaml": ["gray-ft", "colorU-ft", "lut-ft", "graystart-ft"],
}
#: what makes an arm: the same T and its start, E and its weights, training set, stages and their lengths
ARM_KEYS = (
    ("model", "colorizer"),
    ("model", "colorizer_start"),
    ("model", "backbone"),
    ("model", "weights"),
    ("data", "subset"),
    ("data", "size"),
)


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("kept") / "external"
    shutil.copytree(KEPT, d)
    rebuild_table(d)
    return d


def _stages(cfg: dict) -> list[tuple]:
    return [(s["strategy"], s.get("iterations"), s.get("epochs"), s.get("lr")) for s in cfg["stages"]]


def _arm(cell: dict, cells: dict[str, dict]) -> tuple:
    """The arm of a plan cell as one run would train it: the stages of the cell it transfers from first."""
    cfg = cell["config"]
    before = [s for d in cell.get("depends_on") or [] for s in _stages(cells[d]["config"])]
    return tuple(cfg[a][b] for a, b in ARM_KEYS), before + _stages(cfg)


@pytest.mark.parametrize("file", sorted(SHIPPED))
def test_shipped_configuration_is_the_arm_the_study_chooses(kept: Path, tmp_path: Path, file: str) -> None:
    tmpl = tmp_path / "choice.md.j2"
    tmpl.write_text("{{ S.best(" + repr(SHIPPED[file]) + ").selector }}")
    chosen = render_document(tmpl, {"S": kept}, n_boot=10).strip()
    plan = json.loads((kept / "plan.json").read_text())
    cells = {c["id"]: c for c in plan["cells"]}
    seed0 = next(c for c in plan["cells"] if c["group"] == chosen and c["values"]["trainer.seed"] == 0)
    shipped = yaml.safe_load((ROOT / "configs" / "examples" / file).read_text())
    assert _arm(seed0, cells) == _arm({"config": shipped}, cells), f"{file} is not the chosen arm {chosen!r}"
    assert shipped["test_sets"] == seed0["config"]["test_sets"] and shipped["data"] == seed0["config"]["data"]
