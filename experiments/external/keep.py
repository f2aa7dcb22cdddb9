"""Keep the results of the long external study (configs/examples/study-kermany-external.yaml) in the repository,
so that a later session on a fresh machine resumes it instead of starting again.

    python experiments/external/keep.py save      # studies/external -> experiments/external/study
    python experiments/external/keep.py restore   # experiments/external/study -> studies/external

``save`` copies, for every cell that is done (``row.json``) and whose dependants are done too, the files a report
and ``study run`` read back: the run configuration, data and label counts, histories, metrics, predictions,
operating points, colorized and Grad-CAM samples, the run log.  It copies no weights or checkpoints (``.ckpt``,
``.safetensors``, ``.pth``), no image or feature caches and no TensorBoard logs (the CSV logs stay: the report
reads its curves from them).  A done cell whose transfer dependants are not done yet is left out: its dependants
need its weights, so it runs again with them (the runs are deterministic on one CPU type).  ``machines.json``
records the CPU of the machine that saved each cell (the one that ran it: cells are saved in the session that ran
them).

``restore`` copies the kept cells back and rebuilds the results table; ``medcolor study run`` then counts them as
done and runs the rest, and ``study status / report / document`` read them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIVE = ROOT / "studies" / "external"
KEPT = Path(__file__).resolve().parent / "study"
SKIP_SUFFIXES = {".ckpt", ".safetensors", ".pth", ".pt", ".lock"}
SKIP_DIRS = {"image-cache", "feature-cache", "tensorboard", "checkpoints", "lightning_logs"}


def _closed_cells(study: Path) -> list[str]:
    """Cells that are done and whose dependants (cells that transfer from them) are done too."""
    plan = json.loads((study / "plan.json").read_text())
    done = {c["id"] for c in plan["cells"] if (study / "cells" / c["id"] / "row.json").is_file()}
    users: dict[str, list[str]] = {}
    for c in plan["cells"]:
        for src in c.get("depends_on") or []:
            users.setdefault(src, []).append(c["id"])
    return sorted(c for c in done if all(u in done for u in users.get(c, [])))


def _copy_tree(src: Path, dst: Path) -> int:
    n = 0
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if not f.is_file() or f.suffix in SKIP_SUFFIXES or any(p in SKIP_DIRS for p in rel.parts):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst / rel)
        n += 1
    return n


def _cpu() -> str:
    """This machine's CPU model, core count and whether it has AMX / AVX512-BF16 (what bf16 speed depends on)."""
    from medcolor.training.runtime import cpu_bf16_flags, cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, {' '.join(cpu_bf16_flags()) or 'no bf16 instructions'}"


def save() -> None:
    cells = _closed_cells(LIVE)
    KEPT.mkdir(parents=True, exist_ok=True)
    for name in ("study.yaml", "plan.json"):  # the spec and its plan: status, report and document read the plan
        shutil.copy2(LIVE / name, KEPT / name)
    machines_file = KEPT / "machines.json"
    machines = json.loads(machines_file.read_text()) if machines_file.is_file() else {}
    for c in cells:
        if c in machines:
            continue  # kept before (maybe restored here): its files and its machine are those of its first run
        _copy_tree(LIVE / "cells" / c, KEPT / "cells" / c)
        machines[c] = _cpu()
    machines_file.write_text(json.dumps(dict(sorted(machines.items())), indent=2) + "\n")
    print(f"kept {len(cells)} cell(s) in {KEPT.relative_to(ROOT)}")


def restore() -> None:
    if not KEPT.is_dir():
        sys.exit(f"nothing kept in {KEPT}")
    LIVE.mkdir(parents=True, exist_ok=True)
    for name in ("study.yaml", "plan.json"):
        if not (LIVE / name).is_file():
            shutil.copy2(KEPT / name, LIVE / name)
    n = 0
    for cell in sorted((KEPT / "cells").iterdir()):
        if (LIVE / "cells" / cell.name / "row.json").is_file():
            continue  # done here already
        _copy_tree(cell, LIVE / "cells" / cell.name)
        n += 1
    from medcolor.study.layout import rebuild_table

    rebuild_table(LIVE)  # results.parquet from the cells' row.json, as `study run` writes it
    print(f"restored {n} cell(s) into {LIVE.relative_to(ROOT)}")


if __name__ == "__main__":
    commands = {"save": save, "restore": restore}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit("usage: python experiments/external/keep.py save|restore")
    commands[sys.argv[1]]()
