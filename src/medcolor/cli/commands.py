"""The ``medcolor`` commands: each turns parsed flags into one call of the Python API and prints the result."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medcolor.cli.export import run as run_export_command
from medcolor.cli.outputs import check_output
from medcolor.cli.parser import apply_flags, config_from_args
from medcolor.cli.study import run as run_study_command
from medcolor.config import (
    MAX_BOOTSTRAP,
    MAX_SEED,
    MAX_SIZE,
    RunConfig,
    StageConfig,
    check_dataset_options,
    check_number,
    check_precision,
    check_run_config,
)
from medcolor.errors import MedcolorError, OptionError


def cmd_train(a: argparse.Namespace) -> int:
    from medcolor.training import train
    from medcolor.training.rundir import discard_unstarted_run, output_action
    from medcolor.validation import check_run_files

    cfg = config_from_args(a)
    if a.dry_run:
        check_run_config(cfg)
        check_run_files(cfg)
        action = output_action(cfg.output, overwrite=a.overwrite, resume=a.resume)  # refused as train() would
        print(cfg.to_yaml(), end="")
        print(
            f"# medcolor train: every option checked; a run would be written to {cfg.output} ({action})",
            file=sys.stderr,
        )
        return 0
    existed = Path(cfg.output).exists()
    try:
        r = train(cfg, resume=a.resume, overwrite=a.overwrite)
    except MedcolorError:
        if not existed:  # the folder this command created, when it stopped before any training
            discard_unstarted_run(cfg.output)
        raise
    print()
    print(f"run: {r.directory}")
    for s in r.stages:
        auc = "n/a" if s.best_val_mean_auc is None else f"{s.best_val_mean_auc:.4f}"
        print(
            f"  stage {s.index + 1} {s.strategy:<13} lr {s.lr:.3g}  best val mean AUC {auc} "
            f"(step {s.best_step} of {s.total_steps})  {s.time_s:.0f} s"
        )
    if r.test:
        _print_metrics(r.test)
    print(f"model: {r.model_path}" + (f"   colorizer: {r.colorizer_path}" if r.colorizer_path else ""))
    return 0


def _print_metrics(m: dict[str, Any]) -> None:
    ci = m.get("ci95", {})
    split = m.get("split", "test")
    print(f"  {split} ({m['n_samples']} images): mean AUC {_fmt(m['mean_auc'])} {_ci(ci.get('mean_auc'))}")
    for name, v in m["auc"].items():
        print(f"    {name:<28} {_fmt(v)} {_ci(ci.get(name))}")
    if "study_level" in m:
        print(f"  study level ({m.get('n_studies')} studies): mean AUC {_fmt(m['study_level']['mean_auc'])}")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _ci(c: list[float] | None) -> str:
    return f"(95% CI {c[0]:.3f}-{c[1]:.3f})" if c and None not in c else ""


def cmd_evaluate(a: argparse.Namespace) -> int:
    from medcolor.config import read_data_config
    from medcolor.inference import evaluate_model
    from medcolor.operating import OPERATING_POINTS_FILE, operating_point_lines
    from medcolor.testsets import TEST_SETS_DIR

    check_number("--bootstrap", a.bootstrap, integer=True, at_least=0, at_most=MAX_BOOTSTRAP)
    check_precision(a.precision)
    if a.output:
        check_output(a.output, "folder")
    d = {"data": read_data_config(a.config).to_dict()} if a.config else {}
    data = RunConfig.from_dict(apply_flags(d, a, sections=("data",)), where=a.config).data  # the data flags checked
    if any(getattr(a, k) is not None for k in ("dataset", "root", "csv", "config", "option", "split")):
        check_dataset_options(data)
    else:
        data = None  # the run's own held-out split
    test_sets = {k: str(v) for k, v in a.test_set or []}
    if len(test_sets) < len(a.test_set or []):
        raise OptionError("--test-set", "names a test set twice; give each NAME once")
    metrics, out = evaluate_model(
        a.model,
        data=data,
        split=a.split,
        size=a.size,
        output=a.output,
        precision=a.precision,
        bootstrap=a.bootstrap,
        test_sets=test_sets or None,
        operating=_operating_flags(a),
    )
    _print_metrics(metrics)
    print("\n".join(operating_point_lines(out / OPERATING_POINTS_FILE)))
    print(f"written: {out / 'metrics.json'}, {out / 'predictions.csv'}")
    _print_test_sets(metrics.get("test_sets") or {}, Path(a.output or out.parent) / TEST_SETS_DIR)
    return 0


def _operating_flags(a: argparse.Namespace) -> dict[str, Any] | None:
    """The ``operating:`` keys the flags of ``evaluate`` give (``--temperature`` alone keeps the run's threshold
    rule: evaluate_model sets them over the run's own section); None when no flag is given."""
    return apply_flags({}, a, sections=("operating",)).get("operating")


def _print_test_sets(results: dict[str, dict[str, Any]], folder: Path) -> None:
    """Per external test set: its mean AUC, the labels left out of it, its operating points."""
    from medcolor.operating import OPERATING_POINTS_FILE, operating_point_lines

    for name, m in results.items():
        mean = "n/a" if m["mean_auc"] is None else f"{m['mean_auc']:.4f}"
        left = f" (left out: {', '.join(f'{k}: {v}' for k, v in m['left_out'].items())})" if m["left_out"] else ""
        print(f"test set {name}: mean AUC {mean} on {m['n_samples']} images{left}")
        print("\n".join(operating_point_lines(folder / name / OPERATING_POINTS_FILE)))


def cmd_predict(a: argparse.Namespace) -> int:
    from medcolor.inference import predict_files

    check_number("--batch-size", a.batch_size, integer=True, at_least=1)
    check_precision(a.precision)
    if a.output is not None:
        check_output(a.output, "file", inputs=[*a.images, a.model], apart=True)
    if str(a.model).lower().endswith(".onnx"):  # an exported network: onnxruntime on the CPU
        from medcolor.export import predict_onnx

        df = predict_onnx(a.model, a.images, batch_size=a.batch_size)
    else:
        df = predict_files(a.model, a.images, batch_size=a.batch_size, precision=a.precision, device=a.accelerator)
    if a.output:
        from medcolor.utils import atomic_path

        with atomic_path(a.output) as tmp:
            df.to_csv(tmp, index=False)
        print(f"{len(df)} images -> {a.output}")
    else:
        df.to_csv(sys.stdout, index=False)
    return 0


def cmd_colorize(a: argparse.Namespace) -> int:
    from medcolor.inference import colorize_files, colorize_message

    check_number("--size", a.size, integer=True, at_least=8, at_most=MAX_SIZE, optional=True)
    check_output(a.output, "folder", inputs=[*a.images, a.source], apart=True)
    files = colorize_files(a.source, a.images, a.output, size=a.size, display=a.display)
    print(colorize_message(files, a.output))
    return 0


def cmd_explain(a: argparse.Namespace) -> int:
    from medcolor.explain import explain_files

    check_number("--size", a.size, integer=True, at_least=8, at_most=MAX_SIZE, optional=True)
    check_output(a.output, "folder", inputs=[*a.images, a.model], apart=True)
    labels = [s.strip() for s in a.labels.split(",") if s.strip()] if a.labels else None
    files = explain_files(a.model, a.images, a.output, labels=labels, size=a.size, display=a.display)
    print(f"{len(files) - 1} Grad-CAM figures and gradcam.csv written to {a.output}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from medcolor.inference import export_colorizer

    check_output(a.output, "file", inputs=[a.run], apart=True, suffix=".safetensors")
    path, t = export_colorizer(a.run, a.output)
    print(
        f"T ({t.name}, {sum(p.numel() for p in t.parameters()):,} parameters) -> {path} (+ {path.with_suffix('.json')})"
    )
    return 0


def cmd_stats(a: argparse.Namespace) -> int:
    from medcolor.data.bundle import make_dataset
    from medcolor.data.summary import dataset_stats, plot_label_counts
    from medcolor.errors import DataError

    check_number("--max-images", a.max_images, integer=True, at_least=1)
    check_number("--seed", a.seed, integer=True, at_least=0, at_most=MAX_SEED)
    if a.plot:
        check_output(a.plot, "file", suffix=".png", flag="--plot")
    d = {"dataset": a.dataset_name, "root": a.root, "csv": a.csv, "options": dict(a.option or []), "size": a.size}
    try:
        data = RunConfig.from_dict({"data": {**d, "subset": a.subset}}, where=None).data
    except OptionError as exc:  # the flags of this command
        raise OptionError(tuple("--" + k.rsplit(".", 1)[-1].replace("_", "-") for k in exc.keys), exc.problem) from None
    check_dataset_options(data)
    ds = make_dataset(data, a.split)
    s = dataset_stats(ds, subset=data.subset, seed=a.seed)  # the counts first: printed before the slow parts
    print(f"{s.name}: {s.images} images, {s.patients} patients")
    print(s.counts.to_string())
    if s.subset_counts is not None:
        print(f"\nsubset ({s.subset_images} images, seed {a.seed}):\n{s.subset_counts.to_string()}")
    if a.plot:
        print(f"plot: {plot_label_counts(s.tables(), a.plot)}")
    if a.mean_std:
        s.measure_pixels(ds, a.max_images, a.seed)
        use = f"--mean {s.mean:.4f} --std {s.std:.4f}"
        print(f"pixel mean {s.mean:.4f}, std {s.std:.4f} (over {s.sampled} images; use {use})")
    if a.check:
        s.check(ds, progress=sys.stderr.isatty())
    if s.unreadable is not None and len(s.unreadable):
        for msg in s.unreadable["error"]:
            print(f"  {msg}", file=sys.stderr)
        raise DataError(
            f"{len(s.unreadable)} of {s.images} images of {ds.csv if ds.csv is not None else ds.root} cannot be read "
            "(listed above); replace or remove those files (and their label rows) before training"
        )
    if s.unreadable is not None:
        print(f"check: all {s.images} images decode")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    import time

    from medcolor.demo import run_demo
    from medcolor.report import markdown_table

    check_number("--epochs", a.epochs, above=0)
    try:
        lr = StageConfig(lr=a.lr).lr
    except OptionError as exc:
        raise OptionError("--lr", exc.problem) from None
    check_output(a.output, "folder")
    t0 = time.time()
    r = run_demo(
        a.output,
        data=a.data,
        weights=a.weights,
        backbone=a.backbone,
        colorizer=a.colorizer,
        epochs=a.epochs,
        lr=lr,
        progress=a.progress,
    )
    print()
    print(markdown_table(r.table))
    print(f"\nreport: {r.report}   ({time.time() - t0:.0f} s)")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from medcolor.backbone_table import backbone_table
    from medcolor.backbones import TIMM, list_backbones
    from medcolor.colorizers import colorizer_table
    from medcolor.data.datasets import list_datasets
    from medcolor.strategies import STRATEGIES

    size = int(getattr(a, "size", None) or 320)
    print(f"colorizers (T), measured at 1x{size}x{size}:")
    for r in colorizer_table(size):
        print(f"  {r['colorizer']:<13} {r['parameters']:>9,} parameters  {r['gflops']:6.2f} GFLOPs")
    print("strategies:")
    for name in STRATEGIES:
        print(f"  {name:<13} {STRATEGIES.get(name).description}")
    print(f"datasets: {', '.join(list_datasets())}")
    print(
        f"backbones (E): {len(list_backbones())} torchvision classifiers (bare names, e.g. resnet18) and "
        f"{len(list_backbones(TIMM))} timm models (timm:NAME); some, measured at 3x{size}x{size}:"
    )
    for r in backbone_table(size=size):
        mean = "/".join(f"{v:.3f}" for v in r["mean"])
        std = "/".join(f"{v:.3f}" for v in r["std"])
        fixed = f" (fixed {r['size']} px)" if r["size"] != size else ""
        print(
            f"  {r['backbone']:<28} {r['parameters']:>11,} parameters  {r['gflops']:6.2f} GFLOPs{fixed}  "
            f"{r['features']:>5} features  mean {mean} std {std}"
        )
    return 0


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "colorize": cmd_colorize,
    "explain": cmd_explain,
    "export-colorizer": cmd_export,
    "export": run_export_command,
    "stats": cmd_stats,
    "demo": cmd_demo,
    "list": cmd_list,
    "study": run_study_command,
}
