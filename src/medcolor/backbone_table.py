"""What ``medcolor list`` shows of the backbones: parameters and GFLOPs of E at an input size, both families."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from medcolor.backbones import create_backbone

#: the backbones ``medcolor list`` measures: the paper's, the offline-available ones and small timm families
LISTED_BACKBONES = (
    "resnet18",
    "densenet121",
    "mobilenet_v2",
    "efficientnet_b0",
    "timm:tf_efficientnet_lite0",
    "timm:resnet18",
    "timm:convnext_atto",
    "timm:vit_tiny_patch16_224",
)


def backbone_table(names: Sequence[str] = LISTED_BACKBONES, size: int = 320) -> list[dict[str, Any]]:
    """Parameters (of E, without the classifier) and GFLOPs of one ``3 x size x size`` forward (multiply-adds
    counted as 2 by :class:`torch.utils.flop_counter.FlopCounterMode`), built on the meta device (no memory,
    no weights).  A backbone with a fixed input size is measured at that size (``size`` column)."""
    from torch.utils.flop_counter import FlopCounterMode

    rows = []
    for name in names:
        with torch.device("meta"):
            bb = create_backbone(name, None)
        s = int(bb.pretrained_cfg["input_size"][1]) if bb.pretrained_cfg.get("fixed_input_size") else size
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            bb.eval()(torch.empty(1, 3, s, s, device="meta"))
        rows.append(
            {
                "backbone": bb.name,
                "family": bb.family,
                "parameters": sum(p.numel() for p in bb.parameters()),
                "features": bb.num_features,
                "size": s,
                "gflops": counter.get_total_flops() / 1e9,
                "mean": bb.pretrained_cfg["mean"],
                "std": bb.pretrained_cfg["std"],
            }
        )
    return rows


__all__ = ["LISTED_BACKBONES", "backbone_table"]
