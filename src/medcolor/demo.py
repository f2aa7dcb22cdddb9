"""``medcolor demo``: the main job on a built-in default.

With no arguments it generates the synthetic X-ray-like dataset of :mod:`medcolor.data.datasets.synthetic`,
trains two networks on it — ``baseline`` (gray copied to RGB, E frozen) and ``color-module`` (T
learned, E frozen) — with a real ImageNet MobileNetV2 (:func:`find_weights`: ``$MEDCOLOR_WEIGHTS``,
torchvision's cache or download, the weights kept beside the repository; else random initialisation,
with a loud warning), evaluates both on the test split and writes a report (AUC table,
colorized examples, training curves).  ``data=`` points it at any dataset instead (a YAML file with a
``data:`` section, as for ``medcolor train``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medcolor.backbones import imagenet_weights_available
from medcolor.config import (
    DataConfig,
    LRFindConfig,
    ModelConfig,
    RunConfig,
    StageConfig,
    TrainerConfig,
    read_data_config,
)
from medcolor.errors import WeightsError
from medcolor.paths import user_path
from medcolor.utils import write_text_atomic

log = logging.getLogger(__name__)

#: the ImageNet weights of the demo's MobileNetV2 kept beside the repository (features only, torchvision keys)
WEIGHTS_FILE = "mobilenet_v2-imagenet-features.pth"
#: seconds a stalled connection may wait while torchvision downloads the weights (offline: fails at once)
DOWNLOAD_TIMEOUT_S = 30.0


def local_weight_files(backbone: str) -> list[Path]:
    """Where local ImageNet weights of ``backbone`` may be: ``$MEDCOLOR_SHARED/weights``, then ``weights/``
    and ``../shared/weights/`` of the repository this package lives in (not of the working directory)."""
    if backbone != "mobilenet_v2":
        return []
    repo = Path(__file__).resolve().parents[2]  # src/medcolor/demo.py -> the repository
    folders = [user_path(os.environ["MEDCOLOR_SHARED"]) / "weights"] if os.environ.get("MEDCOLOR_SHARED") else []
    folders += [repo / "weights", repo.parent / "shared" / "weights"]
    return [f / WEIGHTS_FILE for f in folders]


def download_imagenet_weights(backbone: str, *, progress: bool = True, timeout: float = DOWNLOAD_TIMEOUT_S) -> bool:
    """torchvision's own download of ``backbone``'s ImageNet weights into its cache (``TORCH_HOME``);
    False, with the reason logged, when it fails (offline, no such weights, a bad file)."""
    import socket
    import urllib.error

    import torchvision

    try:
        w = torchvision.models.get_model_weights(backbone).DEFAULT
    except (KeyError, ValueError, AttributeError) as exc:
        log.info(f"torchvision has no ImageNet weights for {backbone}: {exc}")
        return False
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torch.hub opens the URL without a timeout: never hang on a dead link
    try:
        w.get_state_dict(progress=progress, check_hash=True)
        return True
    except (urllib.error.URLError, OSError, RuntimeError, ValueError) as exc:
        log.info(f"could not download the ImageNet weights of {backbone} ({w.url}): {exc}")
        return False
    finally:
        socket.setdefaulttimeout(old)


def find_weights(backbone: str, *, download: bool = True, progress: bool = True) -> str | None:
    """ImageNet weights for the demo's E: ``$MEDCOLOR_WEIGHTS`` when set, then torchvision's (its cache, or
    its normal download), then the local files of :func:`local_weight_files`; None when there are none."""
    env = os.environ.get("MEDCOLOR_WEIGHTS")
    if env:
        path = user_path(env)
        if not path.is_file():
            raise WeightsError(f"MEDCOLOR_WEIGHTS={env} is not a file; point it at a state-dict file or unset it")
        return str(path)
    if imagenet_weights_available(backbone):
        return "imagenet"
    if download and download_imagenet_weights(backbone, progress=progress):
        return "imagenet"
    for path in local_weight_files(backbone):
        if path.is_file():
            return str(path)
    return None


def _warn_random(backbone: str) -> None:
    log.warning(
        f"WARNING: no ImageNet weights for {backbone} (download failed, none in torchvision's cache or in "
        f"{', '.join(str(p.parent) for p in local_weight_files(backbone)) or 'the local folders'}): E is RANDOMLY "
        "initialised and the comparison says little. Give --weights /path/to/weights.pth or set MEDCOLOR_WEIGHTS."
    )


@dataclass
class DemoResult:
    directory: Path
    table: list[dict[str, Any]]
    report: Path
    weights: str | None


def demo_configs(
    output: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    weights: str | None = None,
    backbone: str = "mobilenet_v2",
    colorizer: str = "colorU",
    epochs: float = 12,
    lr: float | str = 0.02,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, RunConfig]:
    """The demo's two runs, ``baseline`` and ``color-module``, as configurations (not yet checked)."""
    out = Path(output)
    if data is not None:
        data_cfg = read_data_config(data)
    else:
        data_cfg = DataConfig(dataset="synthetic", size=64, batch_size=32, num_workers=0, val=0.15, test=0.25)
        data_cfg.root = str(out / "synthetic-data")
    trainer = TrainerConfig(seed=seed, progress=progress, bootstrap=1000)
    lrf = LRFindConfig(min_lr=1e-4, max_lr=3.0, num_training=40)
    runs = {"baseline": ("replicate", "baseline"), "color-module": (colorizer, "color-module")}
    return {
        name: RunConfig(
            data=data_cfg,
            model=ModelConfig(colorizer=t_name, backbone=backbone, weights=weights or "none"),
            stages=[StageConfig(strategy, lr=lr, epochs=epochs, lr_find=lrf)],
            trainer=trainer,
            output=str(out / name),
            name=f"demo {name}",
        )
        for name, (t_name, strategy) in runs.items()
    }


def check_demo(configs: dict[str, RunConfig]) -> None:
    """Every option of both runs (names, values, files, the output folders) checked as ``train`` checks
    them, before any weights are looked for or any run trains: a bad ``--colorizer`` fails in a second."""
    from medcolor.config import check_run_config
    from medcolor.validation import check_run_files

    for cfg in configs.values():
        check_run_config(cfg)
        check_run_files(cfg)


def run_demo(
    output: str | os.PathLike = "demo-run",
    *,
    data: str | os.PathLike | None = None,
    weights: str | None = None,
    backbone: str = "mobilenet_v2",
    colorizer: str = "colorU",
    epochs: float = 12,
    lr: float | str = 0.02,
    seed: int = 0,
    progress: bool = True,
) -> DemoResult:
    from medcolor.training import train

    out = Path(output)
    options = {"backbone": backbone, "colorizer": colorizer, "epochs": epochs, "lr": lr, "seed": seed}
    configs = demo_configs(out, data=data, weights=weights, progress=progress, **options)
    check_demo(configs)
    if weights is None:
        weights = find_weights(backbone, progress=progress)
    if weights is None:
        _warn_random(backbone)
    else:
        log.info(f"E = {backbone} with ImageNet weights from {weights}")
    results = {}
    for name, cfg in configs.items():
        cfg.model.weights = weights or "none"
        log.info(f"--- {name}: T={cfg.model.colorizer}, E={backbone} frozen, C trained ---")
        results[name] = train(cfg, resume=False)
    table = [_table_row(name, r) for name, r in results.items()]
    report = _write_report(out, results, table, data=data, weights=weights, **options)
    return DemoResult(out, table, report, weights)


def _table_row(name: str, r: Any) -> dict[str, Any]:
    t = r.test or {}
    row = {
        "run": name,
        "trainable parameters": r.stages[-1].trainable_parameters,
        "val mean AUC": r.stages[-1].best_val_mean_auc,
        "test mean AUC": t.get("mean_auc"),
    }
    ci = (t.get("ci95") or {}).get("mean_auc")
    row["test 95% CI"] = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "n/a"
    for label, auc in (t.get("auc") or {}).items():
        row[label] = auc
    return row


def _colorized_examples(out: Path, cm: Any, colorizer: str) -> tuple[list[Path], Path | None]:
    """Six colorized test images of the color-module run and their labelled grid."""
    from medcolor.inference import colorize_files

    test_pred = cm.directory / "test" / "predictions.csv"
    if not test_pred.is_file():
        return [], None
    import pandas as pd

    rows = pd.read_csv(test_pred).head(6)
    examples = colorize_files(cm.model_path, rows["path"].tolist(), out / "colorized", grid=False)
    grid = labelled_grid(examples, rows, out / "colorized_grid.png", title=f"T = {colorizer} (color-module run)")
    return examples, grid


def _write_report(
    out: Path, results: dict[str, Any], table: list[dict[str, Any]], *, data: Any, weights: str | None, **o: Any
) -> Path:
    from medcolor.report import markdown_table, plot_history

    histories = {}
    for name, r in results.items():
        h = r.stages[-1].directory / "history.json"
        if h.is_file():
            histories[name] = json.loads(h.read_text())
    curves = plot_history(histories, out / "training_curves.png")
    cm, colorizer = results["color-module"], o["colorizer"]
    examples, grid = _colorized_examples(out, cm, colorizer)
    lines = [
        "# medcolor demo",
        "",
        f"Data: {'built-in synthetic X-ray-like set' if data is None else data} "
        f"({_count(cm.info.get('train'))} train / {_count(cm.info.get('val'))} val / "
        f"{_count(cm.info.get('test'))} test images, "
        f"labels {', '.join(cm.info.get('label_names', []))}).",
        f"E: {o['backbone']}, weights: {weights or 'random initialisation (no ImageNet weights found)'}; "
        f"T for color-module: {colorizer}. Each run: one-cycle SGD, max lr {o['lr']}, {o['epochs']:g} epochs.",
        "",
        markdown_table(table),
        "",
        f"![training curves]({curves.name})",
        "",
        *_log_lines(out, results),
        "Colorized test images (each tile: the gray input | what E sees; above it the ground truth and the "
        "color-module network's predicted probability per label):",
        "",
        *([f"![colorized test images with ground truth and predictions]({grid.name})", ""] if grid else []),
        *([CHECKERBOARD_NOTE.format(colorizer=colorizer), ""] if colorizer == "colorU" else []),
        "Single images: " + ", ".join(f"[{p.stem}]({p.relative_to(out)})" for p in examples),
        "",
    ]
    return write_text_atomic(out / "REPORT.md", "\n".join(lines))


def _log_lines(out: Path, results: dict[str, Any]) -> list[str]:
    """The report's links to each run's experiment logs (relative to ``out``), and a blank line; none without logs."""
    from medcolor.report.rundirs import experiment_logs

    links = []
    for name, r in results.items():
        for log in experiment_logs(Path(r.directory)):
            what = " ".join(x for x in (name, log["stage"], log["kind"], log["version"]) if x)
            links.append(f"[{what}]({Path(os.path.relpath(log['path'], out)).as_posix()})")
    if not links:
        return []
    return ["Experiment logs (Lightning's CSV log of each stage: training loss and validation AUCs per logged "
            "step; TensorBoard or MLflow with `trainer.logger`): " + ", ".join(links) + ".", ""]  # fmt: skip


def _count(n: Any) -> str:
    """A count as the report prints it: with thousands separators (2,226,434); "?" when unknown."""
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else "?" if n is None else str(n)


#: the report's line under a colorU grid
CHECKERBOARD_NOTE = (
    "Why {colorizer} may show a checkerboard: it upsamples with transposed convolutions (stride 2), whose "
    "overlapping kernels leave a checkerboard pattern until T has trained (Odena et al., 2016); "
    "`--colorizer-start gray` starts T as the gray copy and keeps the anatomy from the first step."
)


def labelled_grid(tiles: list[Path], rows: Any, path: Path, *, title: str = "", columns: int = 3) -> Path:
    """The demo's figure: each tile (a ``colorize`` side-by-side PNG, gray | colour) large, with the image's
    ground truth and the network's probability per label above it (``rows``: its ``predictions.csv`` rows, in
    the tiles' order; blank targets are shown as "?")."""
    import matplotlib.pyplot as plt

    fig = labelled_grid_figure(tiles, rows, title=title, columns=columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def labelled_grid_figure(tiles: list[Path], rows: Any, *, title: str = "", columns: int = 3) -> Any:
    """The matplotlib figure of :func:`labelled_grid` (constrained layout: titles never overlap the tiles)."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    labels = [c[len("prob:") :] for c in rows.columns if c.startswith("prob:")]
    n = len(tiles)
    cols = min(columns, max(n, 1))
    lines = 2 + len(labels)
    fig, axes = plt.subplots(
        math.ceil(n / cols) or 1,
        cols,
        figsize=(4.4 * cols, (2.3 + 0.2 * lines) * math.ceil(n / cols) + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile, (_, row) in zip(axes.flat, tiles, rows.iterrows(), strict=False):
        ax.imshow(np.asarray(Image.open(tile)), interpolation="nearest")
        text = [Path(str(row["path"])).name, "label: truth / predicted probability"]
        for label in labels:
            t = row.get(f"target:{label}")
            truth = "?" if t is None or (isinstance(t, float) and math.isnan(t)) else ("yes" if t >= 0.5 else "no")
            text.append(f"{label}: {truth} / {float(row[f'prob:{label}']):.2f}")
        ax.set_title("\n".join(text), fontsize=9, loc="left")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


__all__ = [
    "DemoResult",
    "check_demo",
    "demo_configs",
    "download_imagenet_weights",
    "find_weights",
    "labelled_grid",
    "labelled_grid_figure",
    "local_weight_files",
    "run_demo",
]
