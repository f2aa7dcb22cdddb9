from __future__ import annotations

import torch

from medcolor.inference import predict_probs
from medcolor.model import ColorTransferNet


def test_reduced_precision_predicts_channels_last_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = ColorTransferNet.create("colorU", "mobilenet_v2", 2, None, progress=False).train()
    view = [{"image": torch.randn(1, 32, 32)} for _ in range(5)]
    fp32 = predict_probs(model, view, batch_size=2)
    bf16 = predict_probs(model, view, batch_size=2, precision="bf16-mixed")
    assert fp32.shape == bf16.shape == (5, 2)
    assert abs(fp32 - bf16).max() < 0.05
    assert model.training
    assert all(p.is_contiguous() for p in model.parameters())  # back to the contiguous format
    again = predict_probs(model, view, batch_size=2)
    assert (again == fp32).all()  # full precision: unchanged by the bf16 call
