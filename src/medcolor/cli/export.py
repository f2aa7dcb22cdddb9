"""``medcolor export RUN --format onnx|torchscript|safetensors -o DIR``: the whole network with a model card
(:func:`medcolor.export.export_model`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    x = sub.add_parser(
        "export",
        help="the whole network T->E->C as ONNX, TorchScript or safetensors, with MODEL_CARD.md",
        description="Export a trained network: input (batch, 1, size, size) gray in [0, 1], normalisation inside "
        "the graph (ONNX/TorchScript) or declared (safetensors), sigmoid probabilities out, any batch size.",
    )
    x.add_argument("run", metavar="RUN", help="a run directory or a model.safetensors")
    x.add_argument(
        "--format",
        dest="export_format",
        choices=["onnx", "torchscript", "safetensors"],
        default="onnx",
        help="onnx (default; runs with onnxruntime, `medcolor predict` reads it), torchscript, or safetensors",
    )
    x.add_argument("-o", "--output", required=True, help="output folder (model file, its .json and MODEL_CARD.md)")
    x.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")


def run(a: argparse.Namespace) -> int:
    from medcolor.cli.outputs import check_output
    from medcolor.config import check_number
    from medcolor.export import export_model

    check_output(a.output, "folder", inputs=[a.run], apart=True)
    check_number("--opset", a.opset, integer=True, at_least=7, optional=True)
    export_model(a.run, a.export_format, a.output, opset=a.opset)  # logs "exported FORMAT: FILE (+ ...)" once
    return 0
