"""``python -m medcolor.study.worker STUDY_DIR CELL_ID``: run one cell (the local executor's worker process).

Exit codes: 0 done, 1 failed (recorded in the cell's FAILED.json), 75 the cell is locked by another
process, 76 a transfer source is not done, 130 interrupted.
"""

from __future__ import annotations

import os
import sys


def configure_cell_logging() -> None:
    """The console logging of the ``medcolor`` command in a process that runs cells (a worker, a SLURM
    job): training's messages as plain lines on stdout, warnings on stderr, Lightning's from WARNING —
    what the cell's ``log.txt`` gets when the cells run inside ``medcolor study run``."""
    from medcolor.utils import configure_logging, quiet_lightning

    configure_logging()
    quiet_lightning()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m medcolor.study.worker STUDY_DIR CELL_ID", file=sys.stderr)
        return 2
    from medcolor.study.local import die_with_parent

    parent = os.environ.get("MEDCOLOR_STUDY_PARENT")
    if parent and os.environ.get("LOCAL_RANK") in (None, "", "0"):  # not in Lightning's own DDP workers
        die_with_parent(int(parent))
    configure_cell_logging()  # the runner sends our stdout and stderr to the cell's log.txt
    from medcolor.study.cell import EXIT_CODES, run_cell

    threads = int(os.environ["MEDCOLOR_THREADS"]) if os.environ.get("MEDCOLOR_THREADS") else None
    devices = int(os.environ["MEDCOLOR_DEVICES"]) if os.environ.get("MEDCOLOR_DEVICES") else None
    try:
        status = run_cell(args[0], args[1], threads=threads, devices=devices, capture=False)
    except KeyboardInterrupt:
        return 130
    return EXIT_CODES[status]


if __name__ == "__main__":
    raise SystemExit(main())
