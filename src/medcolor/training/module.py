"""The LightningModule of a stage: the network ``C(E(T(x)))`` and the optimisation recipe of the paper
(masked binary cross-entropy, SGD with momentum, the one-cycle policy; Sec. IV-B), plus validation AUCs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch

from medcolor.data.transforms import AugmentConfig, BatchRotateZoom, normalize_batch
from medcolor.errors import ConfigError, DataError, TrainingError
from medcolor.evaluation import MaskedAUROC, masked_bce_with_logits, mean_auc
from medcolor.model import ColorTransferNet
from medcolor.utils import nonfinite_tensors

if TYPE_CHECKING:
    from medcolor.training.plan import StagePlan


class ColorTransferModule(L.LightningModule):
    """Holds the network and the optimisation recipe of one stage (masked BCE, SGD + one-cycle).

    One-cycle (fastai's ``fit_one_cycle``): the learning rate rises from ``lr / 25`` to ``lr`` over
    ``pct_start`` of the stage and anneals (cosine) to ``lr / 25e4``; momentum moves the other way,
    from ``momentum`` down to ``momentum - 0.1`` and back (default 0.95 -> 0.85 -> 0.95, fastai's)."""

    def __init__(
        self,
        model: ColorTransferNet,
        label_names: list[str],
        *,
        lr: float = 1e-2,
        total_steps: int = 1,
        momentum: float = 0.95,
        weight_decay: float = 1e-4,
        pct_start: float = 0.25,
        channels_last: bool = False,
        device_augment: AugmentConfig | None = None,
        stage_name: str = "stage",
    ) -> None:
        super().__init__()
        self.model = model
        self.label_names = list(label_names)
        self.lr = lr
        self.total_steps = total_steps
        self.momentum, self.weight_decay, self.pct_start = momentum, weight_decay, pct_start
        self.channels_last = channels_last
        self.device_augment = BatchRotateZoom(device_augment) if device_augment is not None else None
        self.stage_name = stage_name
        self.val_auc = MaskedAUROC(len(self.label_names))
        self.last_good_checkpoint: str | None = None
        self._train_loss = torch.zeros(2, dtype=torch.float64)
        #: a progress logger (a :class:`~medcolor.training.callbacks.ProgressLog`) the module calls itself, for
        #: phases where Lightning replaces the Trainer's callbacks (its LR finder)
        self.progress_log: Any = None
        self.feature_dropout: list[float] = []
        self.feature_dtype = torch.float32

    def on_train_start(self) -> None:
        if self.progress_log is not None:
            self.progress_log.on_train_start(self.trainer, self)

    @classmethod
    def from_plan(
        cls, model: ColorTransferNet, label_names: list[str], plan: StagePlan, lr: float | None = None
    ) -> ColorTransferModule:
        """The module of a planned stage, with max learning rate ``lr`` (default: the plan's)."""
        lr = plan.lr if lr is None else lr
        if lr is None:
            raise ValueError(f"stage {plan.name!r}: the learning rate is not known yet (run the LR range test first)")
        return cls(
            model,
            label_names,
            lr=lr,
            total_steps=plan.schedule.total_steps,
            momentum=plan.momentum,
            weight_decay=plan.weight_decay,
            pct_start=plan.pct_start,
            channels_last=plan.runtime.channels_last,
            device_augment=AugmentConfig() if (plan.runtime.augment_on_device and plan.augment) else None,
            stage_name=plan.name,
        )

    def use_cached_features(self, dropout: list[float], dtype: str) -> None:
        """Train C on ``batch["features"]`` (:mod:`medcolor.training.features`): E's pooled features, computed
        once in ``dtype``; ``dropout``: the probabilities of E's trailing dropout layers, applied as E would."""
        self.feature_dropout = list(dropout)
        self.feature_dtype = getattr(torch, dtype.removeprefix("torch."))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _logits(self, batch: dict[str, Any], train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input, logits)`` of a batch: images through T, E and C, or cached features through C."""
        if "features" not in batch:
            x = self._input(batch, train)
            return x, self(x)
        f = batch["features"].to(self.feature_dtype)
        for p in self.feature_dropout:
            f = torch.nn.functional.dropout(f, p, self.model.backbone.training)
        return f, self.model.head(f)

    def _input(self, batch: dict[str, Any], train: bool) -> torch.Tensor:
        x = batch["image"]
        if x.dtype == torch.uint8:  # uint8 crops from the workers: converted and normalised here, per batch
            x = normalize_batch(x, *batch["normalization"])
        if train and self.device_augment is not None:
            x = self.device_augment(x, batch["seed"])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        x, logits = self._logits(batch, train=True)
        loss = masked_bce_with_logits(logits, batch["target"])
        if not torch.isfinite(loss):
            return self.on_nonfinite_loss(loss, batch, batch_idx, x)
        self._train_loss += torch.tensor([float(loss.detach()), 1.0], dtype=torch.float64)
        self.log("train/loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: dict[str, Any], batch_idx: int) -> None:
        # the loss of a step is computed before its update: an update that makes the weights NaN/inf
        # (a too-high learning rate) shows here first, before any validation or checkpoint uses them
        bad = nonfinite_tensors(self.model)
        if bad:
            self.on_nonfinite_weights(bad)
        if self.progress_log is not None:
            self.progress_log.on_train_batch_end(self.trainer, self, outputs, batch, batch_idx)

    def _where(self) -> str:
        return f"at step {self.global_step} of stage {self.stage_name!r}"

    def _samples(self, batch: dict[str, Any]) -> str:
        idx = batch["index"].tolist()
        return f"sample indices {idx[:8]}{'...' if len(idx) > 8 else ''}"

    def _stop(self, what: str) -> TrainingError:
        """A diverged run: one line with what diverged, where, the last good checkpoint and the remedy."""
        return TrainingError(
            f"{what}; training stopped. The last good checkpoint is "
            f"{self.last_good_checkpoint or 'not written yet (the failure came before the first one)'}. "
            "Lower the learning rate (--lr, or the LR finder's --lr-max)."
        )

    def _check_input(self, x: torch.Tensor, batch: dict[str, Any], where: str) -> None:
        """NaN/inf already in the (normalised) input is bad data, not divergence."""
        if not bool(torch.isfinite(x).all()):
            rows = (~torch.isfinite(x.flatten(1))).any(1).nonzero().flatten().tolist()
            idx = [batch["index"].tolist()[r] for r in rows]
            raise DataError(
                f"the input images {where} hold NaN/inf values after normalisation (sample indices "
                f"{idx[:8]}{'...' if len(idx) > 8 else ''}): check these images and the normalisation "
                "mean/std (--mean/--std)"
            )

    def on_nonfinite_loss(
        self, loss: torch.Tensor, batch: dict[str, Any], batch_idx: int, x: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """Training stops with an error naming the step, the batch and the last good checkpoint (a
        :class:`~medcolor.errors.DataError` when the input itself was not finite)."""
        if x is not None:
            self._check_input(x, batch, f"of step {self.global_step} of stage {self.stage_name!r}")
        raise self._stop(
            f"the loss became {loss.item()} {self._where()} (batch {batch_idx} of the current chunk, "
            f"{self._samples(batch)}): the training diverged"
        )

    def on_nonfinite_weights(self, names: list[str]) -> None:
        raise self._stop(
            f"the weights became NaN/inf {self._where()} ({len(names)} tensors, e.g. {', '.join(names[:3])}): "
            f"the training diverged (max lr {self.lr:.3g})"
        )

    def on_train_epoch_start(self) -> None:
        self._train_loss.zero_()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x, logits = self._logits(batch, train=False)
        if not bool(torch.isfinite(logits).all()):  # never an AUC of NaN probabilities
            self._check_input(x, batch, "of the validation split")
            raise self._stop(
                f"the network's outputs on the validation images became NaN/inf {self._where()} "
                f"({self._samples(batch)}): the training diverged"
            )
        loss = masked_bce_with_logits(logits, batch["target"])
        self.val_auc.update(torch.sigmoid(logits.float()), batch["target"])
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(logits))

    def on_validation_epoch_end(self) -> None:
        aucs = np.atleast_1d(self.val_auc.compute().cpu().numpy())  # torchmetrics squeezes a single label
        self.val_auc.reset()
        m = mean_auc(aucs)
        self.log("val/mean_auc", m if not math.isnan(m) else float("nan"), prog_bar=True)
        for name, a in zip(self.label_names, aucs, strict=True):
            self.log(f"val/auc/{name}", float(a))
        n = float(self._train_loss[1])
        self.log("train/loss_chunk", float(self._train_loss[0]) / n if n else float("nan"))

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(f"stage {self.stage_name!r} has no trainable parameters")
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        # OneCycleLR needs >= 2 steps in its warm-up phase: very short stages get a longer warm-up
        total = max(self.total_steps, 4)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=self.lr,
            total_steps=total,
            pct_start=min(0.5, max(self.pct_start, 2 / total)),
            anneal_strategy="cos",
            cycle_momentum=True,
            base_momentum=max(0.0, self.momentum - 0.1),
            max_momentum=self.momentum,
            div_factor=25.0,
            final_div_factor=1e4,
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


__all__ = ["ColorTransferModule"]
