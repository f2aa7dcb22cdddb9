"""``python tests/training/resume_driver.py CONFIG PHASE [STEP]``: ``medcolor train --config CONFIG`` in this process,
SIGKILLed (no clean-up, no ``finally``) at a chosen point of a two-stage run (tests/training/test_resume.py).

PHASE is ``none`` (run to the end), ``stage-1`` / ``stage-2`` (at optimizer step STEP of that stage),
``lr-test`` (at step STEP of the LR range test), ``between-stages`` (right after stage 1 wrote its result)
or ``test`` (when the test-set evaluation starts predicting).  One CPU thread: bit-identical results
across processes and fast on a busy machine.
"""

from __future__ import annotations

import os
import signal
import sys

import torch


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at(phase: str, step: int) -> None:
    from medcolor.training.lr_find import RangeTestModule
    from medcolor.training.module import ColorTransferModule

    if phase == "lr-test":
        original = RangeTestModule.training_step

        def lr_step(self, batch, batch_idx):
            if self.trainer.global_step == step:
                _die()
            return original(self, batch, batch_idx)

        RangeTestModule.training_step = lr_step
    elif phase in ("stage-1", "stage-2"):
        original = ColorTransferModule.training_step
        stage = 0 if phase == "stage-1" else 1

        def train_step(self, batch, batch_idx):
            ours = not isinstance(self, RangeTestModule) and self.trainer.default_root_dir.rstrip("/").split("/")[
                -1
            ].startswith(f"{stage + 1}-")
            if ours and self.trainer.global_step == step:
                _die()
            return original(self, batch, batch_idx)

        ColorTransferModule.training_step = train_step
    elif phase == "between-stages":
        import medcolor.training.pipeline as pipeline

        write = pipeline.write_stage_result

        def write_then_die(result):
            path = write(result)
            if result.index == 0:
                _die()
            return path

        pipeline.write_stage_result = write_then_die
    elif phase == "test":
        import medcolor.evaluation.dataset as evaluation

        evaluation.predict_probs = lambda *a, **k: _die()
    elif phase != "none":
        raise SystemExit(f"unknown phase {phase!r}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    config, phase = sys.argv[1], sys.argv[2]
    _kill_at(phase, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    from medcolor.cli import main

    sys.exit(main(["train", "--config", config]))
