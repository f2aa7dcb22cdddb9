"""The ``medcolor`` command: a thin layer over the Python API.

Every ``train`` option can come from a YAML file (``--config run.yaml``); flags given on the command
line override the file.  Errors in input files or options are printed as one clear message (exit 2).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from medcolor.errors import ConfigError, MedcolorError

EPILOG_TRAIN = """examples:
  # the paper's two-stage procedure on a folder dataset, MobileNetV2 with local ImageNet weights
  medcolor train --dataset folder --root ../shared/data/kermany-pneumonia-224/train \\
      --option patient_regex=kermany --size 224 --backbone mobilenet_v2 \\
      --weights ../shared/weights/mobilenet_v2-imagenet-features.pth \\
      --colorizer pixelshuffle --stages color-module,all --lr find --epochs 2 --output runs/kermany
  # the same from a YAML file, with one option changed
  medcolor train --config configs/examples/kermany.yaml --epochs 1
  # transfer T and E of that run to ChestX-ray14, train only the last layer
  medcolor train --config configs/examples/nih-last-layer.yaml --init-from runs/kermany
"""


def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), yaml.safe_load(v)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help="chexpert | chestxray14 | mura | csv | folder | synthetic")
    g.add_argument("--root", help="the dataset's image folder")
    g.add_argument("--csv", help="the label file (default: the dataset's official file in --root)")
    g.add_argument(
        "--option",
        action="append",
        type=_kv,
        metavar="KEY=VALUE",
        help="a dataset option, e.g. policy=ones, patient_regex=kermany, labels=[Edema] (repeatable)",
    )
    g.add_argument("--size", type=int, help="network input size in pixels (paper: 320)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--num-workers", type=int, help="DataLoader worker processes")
    g.add_argument("--cache-dir", help="decode images once into this memory-mapped cache")


def _add_train_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("splits")
    g.add_argument("--train-split", help="official split used for training (e.g. train)")
    g.add_argument("--val", help="validation: a fraction of patients (0.1) or an official split name (valid)")
    g.add_argument("--test", help="test: a fraction of patients, a split name, or none")
    g.add_argument("--split-seed", type=int)
    g.add_argument("--subset", type=float, help="training subset: fraction (0.001 = 0.1%%) or count of images")
    g.add_argument("--subset-draw", type=int, help="which independent draw of the subset (0, 1, 2...)")
    g.add_argument("--mean", help="normalisation mean (default: CheXpert's 0.5028) or 'compute'")
    g.add_argument("--std", type=float, help="normalisation std (default: CheXpert's 0.2902)")
    g.add_argument("--no-augment", dest="augment", action="store_const", const=False)
    g.add_argument("--augment-on", choices=["auto", "worker", "device"])
    g.add_argument(
        "--on-missing",
        choices=["error", "skip", "present"],
        help="rows whose image is missing: error; skip (listed in data.json); present (the folder holds only "
        "part of the dataset, e.g. nih-chestxray14-1000)",
    )


def build_parser() -> argparse.ArgumentParser:
    from medcolor import __version__

    ap = argparse.ArgumentParser(
        prog="medcolor",
        description="Transfer learning through colorization: learn a colorization module T that turns "
        "grayscale X-rays into the colour images an ImageNet-pretrained CNN E expects, with a multi-label "
        "classifier C on top.",
    )
    ap.add_argument("--version", action="version", version=f"medcolor {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="show Lightning's messages and full tracebacks")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train T/E/C with one or more strategies (stages)",
        epilog=EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--config", help="a YAML run configuration; flags override it")
    _add_data_args(t)
    _add_train_data_args(t)
    g = t.add_argument_group("model (T, E, C)")
    g.add_argument("--backbone", help="E: any torchvision classifier (resnet18, densenet121, mobilenet_v2...)")
    g.add_argument("--weights", help="E's weights: imagenet (download/cache), none, or a state-dict file")
    g.add_argument("--colorizer", help="T: deconv | pixelshuffle | colorU | replicate")
    g.add_argument("--colorizer-from", help="start T from an exported colorizer (.safetensors)")
    g.add_argument("--init-from", help="start T and E from an earlier run directory or model file")
    g.add_argument("--frozen-bn", choices=["fastai", "stats", "eval"], help="BatchNorm in frozen parts")
    g = t.add_argument_group("stages and optimisation")
    g.add_argument("--stages", help="comma-separated strategies, e.g. color-module,all or baseline")
    g.add_argument("--lr", help="one-cycle maximum learning rate, or 'find' (LR range test per stage)")
    g.add_argument("--lr-min", type=float, help="LR finder: lowest learning rate tried")
    g.add_argument("--lr-max", type=float, help="LR finder: highest learning rate tried")
    g.add_argument("--lr-steps", type=int, help="LR finder: number of steps")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, help="stage length in epochs")
    length.add_argument("--iterations", type=int, help="stage length in iterations")
    g.add_argument("--val-every", type=int, help="validate + checkpoint every N iterations (paper: 4800)")
    g.add_argument("--weight-decay", type=float)
    g = t.add_argument_group("hardware and run")
    g.add_argument("--precision", help="auto | 32-true | bf16-mixed | 16-mixed")
    g.add_argument("--channels-last", help="auto | true | false")
    g.add_argument("--accelerator", help="auto | cpu | gpu")
    g.add_argument("--devices", help="number of devices (GPUs); several -> DDP")
    g.add_argument("--num-nodes", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--bootstrap", type=int, help="bootstrap resamples for test-set CIs (0: none)")
    g.add_argument("--no-progress", dest="progress", action="store_const", const=False)
    g.add_argument("-o", "--output", help="run directory")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run stored in --output")
    mode.add_argument("--overwrite", action="store_true", help="delete the run in --output and start again")

    e = sub.add_parser("evaluate", help="AUCs of a trained network on a dataset (per label, mean, 95%% CI)")
    e.add_argument("model", metavar="RUN_OR_MODEL", help="a run directory or a model.safetensors")
    e.add_argument("--config", help="YAML with a data: section (default: the run's own test split)")
    _add_data_args(e)
    e.add_argument("--split", help="official split of the dataset to evaluate (e.g. valid, test)")
    e.add_argument("--bootstrap", type=int, default=1000)
    e.add_argument("--precision", default="32-true")
    e.add_argument("-o", "--output", help="directory for metrics.json and predictions.csv")

    p = sub.add_parser("predict", help="probabilities for image files or folders (PNG/JPEG/DICOM) as CSV")
    p.add_argument("model", metavar="CHECKPOINT", help="a run directory or a model.safetensors")
    p.add_argument("images", nargs="+", metavar="IMAGES")
    p.add_argument("-o", "--output", help="CSV file (default: print to stdout)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--precision", default="32-true")

    c = sub.add_parser("colorize", help="the colour images T produces, beside the inputs (paper Fig. 4)")
    c.add_argument("source", metavar="CHECKPOINT_OR_T", help="a run directory, model or exported colorizer")
    c.add_argument("images", nargs="+", metavar="IMAGES")
    c.add_argument("-o", "--output", required=True, help="output folder")
    c.add_argument("--size", type=int, help="input size (default: the one T was trained at)")
    c.add_argument(
        "--display",
        choices=["imagenet", "minmax"],
        default="imagenet",
        help="imagenet: undo ImageNet normalisation (what E sees); minmax: stretch each image",
    )

    x = sub.add_parser("export-colorizer", help="save T of a run as safetensors + JSON metadata")
    x.add_argument("run", metavar="RUN", help="a run directory, a stage directory, or a model.safetensors")
    x.add_argument("-o", "--output", required=True, help="output .safetensors file")

    s = sub.add_parser("stats", help="label counts per label (positive/negative/uncertain/blank), mean/std")
    s.add_argument("dataset_name", metavar="DATASET", help="chexpert | chestxray14 | mura | csv | folder")
    s.add_argument("--root")
    s.add_argument("--csv")
    s.add_argument("--option", action="append", type=_kv, metavar="KEY=VALUE")
    s.add_argument("--split")
    s.add_argument("--subset", type=float, help="also count a label-proportional subset of this size")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--plot", help="write a bar plot like the paper's Fig. 5 to this PNG")
    s.add_argument("--mean-std", action="store_true", help="compute the pixel mean/std for normalisation")
    s.add_argument("--max-images", type=int, default=2000, help="images sampled for --mean-std")
    s.add_argument("--size", type=int, default=320, help="images are reduced to this short side first")

    d = sub.add_parser("demo", help="the built-in demo: baseline vs color-module on synthetic X-rays")
    d.add_argument("-o", "--output", default="demo-run")
    d.add_argument("--data", help="a YAML file with a data: section to run the demo on real data")
    d.add_argument("--weights", help="ImageNet weights of E (default: searched, see docs)")
    d.add_argument("--backbone", default="mobilenet_v2")
    d.add_argument("--colorizer", default="colorU", help="T of the color-module run (default colorU, the fastest)")
    d.add_argument("--epochs", type=float, default=12)
    d.add_argument(
        "--lr",
        default="0.02",
        help="one-cycle max lr of both runs, or 'find' (the LR range test; unreliable on the 360 synthetic images)",
    )
    d.add_argument("--no-progress", dest="progress", action="store_false")

    sub.add_parser("list", help="the registered colorizers (with parameters and GFLOPs), strategies, datasets")
    from medcolor.study.cli import add_parser as add_study_parser

    add_study_parser(sub)
    return ap


# ----------------------------------------------------------------------------- train config merging
_DATA_KEYS = [
    "dataset",
    "root",
    "csv",
    "size",
    "batch_size",
    "num_workers",
    "cache_dir",
    "train_split",
    "split_seed",
    "subset",
    "subset_draw",
    "std",
    "augment",
    "augment_on",
    "on_missing",
]
_MODEL_KEYS = ["backbone", "weights", "colorizer", "colorizer_from", "init_from", "frozen_bn"]
_STAGE_KEYS = {
    "lr": "lr",
    "epochs": "epochs",
    "iterations": "iterations",
    "val_every": "val_every",
    "weight_decay": "weight_decay",
}
_TRAINER_KEYS = [
    "precision",
    "channels_last",
    "accelerator",
    "devices",
    "num_nodes",
    "seed",
    "bootstrap",
    "progress",
]


def _fraction_or_name(v: str) -> float | str | None:
    if v.lower() in {"none", "null", ""}:
        return None
    try:
        return float(v)
    except ValueError:
        return v


def config_from_args(a: argparse.Namespace) -> Any:
    from medcolor.config import RunConfig, read_yaml

    d: dict[str, Any] = read_yaml(a.config) if a.config else {}
    data = d.setdefault("data", {})
    model = d.setdefault("model", {})
    trainer = d.setdefault("trainer", {})
    for k in _DATA_KEYS:
        v = getattr(a, k, None)
        if v is not None:
            data[k] = v
    for k in ("val", "test"):
        v = getattr(a, k, None)
        if v is not None:
            data[k] = _fraction_or_name(v)
    if a.mean is not None:
        data["mean"] = a.mean if a.mean == "compute" else float(a.mean)
    if a.option:
        data.setdefault("options", {}).update(dict(a.option))
    for k in _MODEL_KEYS:
        v = getattr(a, k, None)
        if v is not None:
            model[k] = v
    for k in _TRAINER_KEYS:
        v = getattr(a, k, None)
        if v is not None:
            trainer[k] = v
    if a.stages:
        old = d.get("stages") or []
        template = old[0] if old else {}
        d["stages"] = [{**template, "strategy": s.strip()} for s in a.stages.split(",") if s.strip()]
    stages = d.setdefault("stages", [{"strategy": "color-module"}])
    for st in stages:
        for flag, key in _STAGE_KEYS.items():
            v = getattr(a, flag, None)
            if v is not None:
                st[key] = v
        if a.epochs is not None:
            st.pop("iterations", None)
        if a.iterations is not None:
            st.pop("epochs", None)
        for flag, key in (("lr_min", "min_lr"), ("lr_max", "max_lr"), ("lr_steps", "num_training")):
            v = getattr(a, flag, None)
            if v is not None:
                st.setdefault("lr_find", {})[key] = v
    if a.output:
        d["output"] = a.output
    return RunConfig.from_dict(d, where=a.config or "options")


# ----------------------------------------------------------------------------- commands
def cmd_train(a: argparse.Namespace) -> int:
    from medcolor.training import train

    cfg = config_from_args(a)
    r = train(cfg, resume=a.resume, overwrite=a.overwrite)
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
    from medcolor.config import DataConfig, RunConfig, read_data_config
    from medcolor.data.bundle import NetworkView, make_dataset
    from medcolor.data.transforms import EvalTransform
    from medcolor.inference import evaluate_dataset, resolve_model_path, write_predictions
    from medcolor.io import load_model
    from medcolor.utils import write_json

    path = resolve_model_path(a.model)
    model, meta = load_model(path)
    run_dir = path.parent
    data_flags = any(getattr(a, k) is not None for k in ("dataset", "root", "csv", "config", "option", "split"))
    if data_flags:
        data = read_data_config(a.config) if a.config else DataConfig()
        for k in ("dataset", "root", "csv", "batch_size", "num_workers", "cache_dir"):
            if getattr(a, k, None) is not None:
                setattr(data, k, getattr(a, k))
        if a.option:
            data.options.update(dict(a.option))
        data.size = a.size or int(meta.get("size", data.size))
        dataset = make_dataset(data, a.split)
        name = a.split or "data"
    elif (run_dir / "config.yaml").is_file():
        from medcolor.data.bundle import build_data

        cfg = RunConfig.from_yaml(run_dir / "config.yaml")
        bundle = build_data(cfg.data, synthetic_dir=run_dir / "synthetic-data")
        dataset, name = (bundle.test, "test") if bundle.test is not None else (bundle.val, "val")
        data = cfg.data
    else:
        raise ConfigError(f"{path} is not inside a run directory: say which data to evaluate with --dataset/--root")
    labels = list(meta.get("label_names") or dataset.label_names)
    if list(dataset.label_names) != labels:
        raise ConfigError(
            f"the network predicts {labels} but the dataset has labels {list(dataset.label_names)}; "
            "choose matching labels with --option labels=[...]"
        )
    norm = meta.get("normalization") or {}
    size = int(meta.get("size", data.size))
    view = NetworkView(dataset, EvalTransform(size, norm.get("mean", 0.5028), norm.get("std", 0.2902)))
    res = evaluate_dataset(
        model,
        view,
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        precision=a.precision,
        bootstrap=a.bootstrap,
        progress=True,
    )
    out = Path(a.output) if a.output else run_dir / f"evaluate-{name}"
    metrics = res.result.to_dict() | {"split": name, "model": str(path)}
    write_json(out / "metrics.json", metrics)
    write_predictions(out / "predictions.csv", dataset, res.probs, labels)
    _print_metrics(metrics)
    print(f"written: {out / 'metrics.json'}, {out / 'predictions.csv'}")
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from medcolor.inference import predict_files

    df = predict_files(a.model, a.images, batch_size=a.batch_size, precision=a.precision)
    if a.output:
        from medcolor.utils import atomic_path

        with atomic_path(a.output) as tmp:
            df.to_csv(tmp, index=False)
        print(f"{len(df)} images -> {a.output}")
    else:
        df.to_csv(sys.stdout, index=False)
    return 0


def cmd_colorize(a: argparse.Namespace) -> int:
    from medcolor.inference import colorize_files

    files = colorize_files(a.source, a.images, a.output, size=a.size, display=a.display)
    print(f"{len(files)} images written to {a.output}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from medcolor.inference import load_colorizer_any
    from medcolor.io import save_colorizer

    t, meta = load_colorizer_any(a.run)
    if not t.learnable:
        raise ConfigError(f"{a.run} has no learned colorization module (its T is {t.name!r})")
    keep = {
        k: v
        for k, v in meta.items()
        if k not in {"format", "format_version", "colorizer", "colorizer_kwargs", "architecture"}
    }
    path = save_colorizer(t, a.output, **keep)
    print(
        f"T ({t.name}, {sum(p.numel() for p in t.parameters()):,} parameters) -> {path} (+ {path.with_suffix('.json')})"
    )
    return 0


def cmd_stats(a: argparse.Namespace) -> int:
    from medcolor.config import DataConfig
    from medcolor.data.bundle import make_dataset
    from medcolor.data.summary import label_counts, plot_label_counts

    data = DataConfig(dataset=a.dataset_name, root=a.root, csv=a.csv, options=dict(a.option or []), size=a.size)
    ds = make_dataset(data, a.split)
    counts = label_counts(ds)
    print(f"{ds.name}: {len(ds)} images, {len(set(ds.patient_ids))} patients")
    print(counts.to_string())
    tables = {"full set": counts}
    if a.subset:
        from medcolor.data.splits import label_subset

        kw = {"count": int(a.subset)} if a.subset > 1 else {"fraction": a.subset}
        idx = label_subset(ds.raw_labels, seed=a.seed, **kw)
        sub_counts = label_counts(ds.subset(idx))
        print(f"\nsubset ({len(idx)} images, seed {a.seed}):")
        print(sub_counts.to_string())
        tables[f"subset ({len(idx)} images)"] = sub_counts
    if a.plot:
        print(f"plot: {plot_label_counts(tables, a.plot)}")
    if a.mean_std:
        from medcolor.data.transforms import compute_mean_std

        mean, std = compute_mean_std(ds, max_images=a.max_images, seed=a.seed)
        print(
            f"pixel mean {mean:.4f}, std {std:.4f} (over {min(len(ds), a.max_images)} images; "
            f"use --mean {mean:.4f} --std {std:.4f})"
        )
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    import time

    from medcolor.demo import run_demo
    from medcolor.report import markdown_table

    t0 = time.time()
    r = run_demo(
        a.output,
        data=a.data,
        weights=a.weights,
        backbone=a.backbone,
        colorizer=a.colorizer,
        epochs=a.epochs,
        lr=a.lr if a.lr == "find" else float(a.lr),
        progress=a.progress,
    )
    print()
    print(markdown_table(r.table))
    print(f"\nreport: {r.report}   ({time.time() - t0:.0f} s)")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from medcolor.backbones import list_backbones
    from medcolor.colorizers import colorizer_table
    from medcolor.data.datasets import list_datasets
    from medcolor.strategies import STRATEGIES

    print("colorizers (T), measured at 1x320x320:")
    for r in colorizer_table(320):
        print(f"  {r['colorizer']:<13} {r['parameters']:>9,} parameters  {r['gflops']:6.2f} GFLOPs")
    print("strategies:")
    for name in STRATEGIES:
        print(f"  {name:<13} {STRATEGIES.get(name).description}")
    print(f"datasets: {', '.join(list_datasets())}, synthetic")
    print(f"backbones (E): {len(list_backbones())} torchvision classifiers, e.g. resnet18, densenet121, mobilenet_v2")
    return 0


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "colorize": cmd_colorize,
    "export-colorizer": cmd_export,
    "stats": cmd_stats,
    "demo": cmd_demo,
    "list": cmd_list,
    "study": lambda a: __import__("medcolor.study.cli", fromlist=["run"]).run(a),
}


def quiet_lightning() -> None:
    import lightning.pytorch  # noqa: F401 - it sets its loggers to INFO on import; lower them afterwards

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*You defined a `validation_step` but have no `val_dataloader`.*")


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not a.command:
        ap.print_help()
        return 0
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(message)s")
    if not a.verbose:
        quiet_lightning()
    try:
        return COMMANDS[a.command](a)
    except MedcolorError as exc:
        if a.verbose:
            raise
        print(f"medcolor {a.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nmedcolor {a.command}: interrupted. Re-run the same command to resume from the last checkpoint.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
