"""The ``medcolor`` command line: its parser and :data:`CONFIG_FLAGS`, the one table of which flag sets
which configuration key (``medcolor train`` applies them over ``--config``; ``evaluate`` its ``data.*`` ones).
"""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

import yaml

from medcolor.training.lr_suggest import LR_RULES

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


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``medcolor train: error: argument --size: invalid int value: 'x'``
    and a pointer to ``--help`` instead of the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _int_or_auto(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or auto, got {text!r}") from None


def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    if not k.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a KEY, got {text!r}")
    try:
        return k.strip(), yaml.safe_load(v)
    except yaml.YAMLError as exc:
        from medcolor.config import yaml_problem

        raise argparse.ArgumentTypeError(f"the value of {k.strip()} is not valid YAML: {yaml_problem(exc)}") from None


def _fraction_or_name(v: str) -> float | str | None:
    if v.lower() in {"none", "null", ""}:
        return None
    try:
        return float(v)
    except ValueError:
        return v


def _mean(v: str) -> float | str:
    if v == "compute":
        return v
    try:
        return float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'compute', got {v!r}") from None


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
    g.add_argument(
        "--num-workers", type=_int_or_auto, help="DataLoader worker processes, or auto (2 on the CPU, up to 8 per GPU)"
    )
    g.add_argument("--cache-dir", help="decode images once into this memory-mapped cache")


def _add_train_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("splits")
    g.add_argument("--train-split", help="official split used for training (e.g. train)")
    g.add_argument("--val", help="validation: a fraction of patients (0.1) or an official split name (valid)")
    g.add_argument("--test", help="test: a fraction of patients, a split name, or none")
    g.add_argument("--split-seed", type=int)
    g.add_argument("--subset", type=float, help="training subset: fraction (0.001 = 0.1%%) or count of images")
    g.add_argument("--subset-draw", type=int, help="which independent draw of the subset (0, 1, 2...)")
    g.add_argument("--mean", type=_mean, help="normalisation mean (default: the paper's CheXpert value) or 'compute'")
    g.add_argument("--std", type=float, help="normalisation std (default: the paper's CheXpert value)")
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

    ap = Parser(
        prog="medcolor",
        description="Transfer learning through colorization: learn a colorization module T that turns "
        "grayscale X-rays into the colour images an ImageNet-pretrained CNN E expects, with a multi-label "
        "classifier C on top.",
    )
    ap.add_argument("--version", action="version", version=f"medcolor {__version__}")
    ap.add_argument(
        "-v", "--verbose", action="store_true", help="show debug messages, Lightning's messages and full tracebacks"
    )
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
    g.add_argument(
        "--colorizer", help="T: deconv | pixelshuffle | colorU | replicate (ablations: lut, replicate-imagenet)"
    )
    g.add_argument(
        "--colorizer-start",
        choices=["random", "gray"],
        help="a learnable T starts at random (the paper, default) or at the gray copy (a zero-initialised residual)",
    )
    g.add_argument("--colorizer-from", help="start T from an exported colorizer (.safetensors)")
    g.add_argument("--init-from", help="start T and E from an earlier run directory or model file")
    g.add_argument("--frozen-bn", choices=["fastai", "stats", "eval"], help="BatchNorm in frozen parts")
    g = t.add_argument_group("stages and optimisation")
    g.add_argument("--stages", help="comma-separated strategies, e.g. color-module,all or baseline")
    g.add_argument("--lr", help="one-cycle maximum learning rate (default 0.01), or 'find' (LR range test per stage)")
    g.add_argument("--lr-min", type=float, help="LR finder: lowest learning rate tried")
    g.add_argument("--lr-max", type=float, help="LR finder: highest learning rate tried")
    g.add_argument("--lr-steps", type=int, help="LR finder: number of steps")
    g.add_argument(
        "--lr-rule",
        choices=LR_RULES,
        help="LR finder: how the max lr is read off the curve (default steepest: the steepest descent of "
        "the smoothed loss; minimum: lowest loss / 10; valley: the middle of the longest descent)",
    )
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
    mode.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run in --output (only the files a run writes) and start again",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="check every option and print the resolved configuration; reads no data, creates nothing",
    )

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
    p.add_argument(
        "--precision", default="auto", help="auto (bf16 where the hardware has it, as training) | 32-true | bf16-mixed"
    )
    p.add_argument("--accelerator", default="auto", help="auto | cpu | gpu")

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

    xp = sub.add_parser("explain", help="Grad-CAM maps of a network per image and label, beside T's colour image")
    xp.add_argument("model", metavar="MODEL", help="a run directory or a model.safetensors")
    xp.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders")
    xp.add_argument("-o", "--output", required=True, help="output folder")
    xp.add_argument("--labels", help="comma-separated label names or output indices (default: every label)")
    xp.add_argument("--size", type=int, help="input size (default: the network's)")
    xp.add_argument("--display", choices=["imagenet", "minmax"], default="imagenet", help="how T's image is shown")

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
    s.add_argument(
        "--check",
        action="store_true",
        help="decode every image up front (as training will) and report all that cannot be read (exit 2)",
    )

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
    from medcolor.cli.study import add_parser as add_study_parser

    add_study_parser(sub)
    return ap


# ----------------------------------------------------------------------------- flags -> configuration
#: The one table of command-line flags that set configuration keys: argparse destination -> dotted key
#: of :class:`~medcolor.config.RunConfig` (``stages.*.KEY``: KEY of every stage).  ``medcolor train``
#: applies all of them over ``--config``; ``medcolor evaluate`` the ``data.*`` ones it has.
CONFIG_FLAGS: dict[str, str] = {
    "dataset": "data.dataset",
    "root": "data.root",
    "csv": "data.csv",
    "option": "data.options",
    "size": "data.size",
    "batch_size": "data.batch_size",
    "num_workers": "data.num_workers",
    "cache_dir": "data.cache_dir",
    "train_split": "data.train_split",
    "val": "data.val",
    "test": "data.test",
    "split_seed": "data.split_seed",
    "subset": "data.subset",
    "subset_draw": "data.subset_draw",
    "mean": "data.mean",
    "std": "data.std",
    "augment": "data.augment",
    "augment_on": "data.augment_on",
    "on_missing": "data.on_missing",
    "backbone": "model.backbone",
    "weights": "model.weights",
    "colorizer": "model.colorizer",
    "colorizer_from": "model.colorizer_from",
    "colorizer_start": "model.colorizer_start",
    "init_from": "model.init_from",
    "frozen_bn": "model.frozen_bn",
    "stages": "stages.*.strategy",  # "a,b": one stage per strategy (settings of the first stage kept)
    "lr": "stages.*.lr",
    "lr_min": "stages.*.lr_find.min_lr",
    "lr_max": "stages.*.lr_find.max_lr",
    "lr_steps": "stages.*.lr_find.num_training",
    "lr_rule": "stages.*.lr_find.rule",
    "epochs": "stages.*.epochs",
    "iterations": "stages.*.iterations",
    "val_every": "stages.*.val_every",
    "weight_decay": "stages.*.weight_decay",
    "precision": "trainer.precision",
    "channels_last": "trainer.channels_last",
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "num_nodes": "trainer.num_nodes",
    "seed": "trainer.seed",
    "bootstrap": "trainer.bootstrap",
    "progress": "trainer.progress",
    "output": "output",
}
#: flags whose text becomes another value ("none" -> None, "0.1" -> 0.1, "valid" stays)
_CONVERT = {"val": _fraction_or_name, "test": _fraction_or_name}
#: setting one of these stage keys drops the other (a stage has epochs or iterations)
_EXCLUSIVE = {"epochs": "iterations", "iterations": "epochs"}


def _set(d: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    if last == "options":
        d.setdefault(last, {}).update(dict(value))  # --option KEY=VALUE (repeatable) adds to the file's
    else:
        d[last] = value
        if last in _EXCLUSIVE:
            d.pop(_EXCLUSIVE[last], None)


def apply_flags(d: dict[str, Any], a: argparse.Namespace, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Write the flags given in ``a`` into the configuration dict ``d`` (of ``sections`` only, if given)."""
    for dest, key in CONFIG_FLAGS.items():
        value = getattr(a, dest, None)
        section = key.split(".")[0]
        if value is None or (sections is not None and section not in sections):
            continue
        value = _CONVERT[dest](value) if dest in _CONVERT else value
        if key == "stages.*.strategy":  # "" or "," leave no stage: an error of check_run_config
            old = d.get("stages") or []
            template = old[0] if old else {}
            d["stages"] = [{**template, "strategy": s.strip()} for s in value.split(",") if s.strip()]
        elif section == "stages":
            for st in d.setdefault("stages", [{"strategy": "color-module"}]):
                _set(st, key.split(".", 2)[2], value)
        else:
            _set(d, key, value)
    return d


def flag_names() -> dict[str, str]:
    """Configuration key (``data.size``, ``stages.*.lr``) -> the ``medcolor train`` flag that sets it."""
    ap = build_parser()
    sub = next(x for x in ap._actions if isinstance(x, argparse._SubParsersAction))
    options = {x.dest: max(x.option_strings, key=len) for x in sub.choices["train"]._actions if x.option_strings}
    flags = {key: options[dest] for dest, key in CONFIG_FLAGS.items() if dest in options}
    return flags | {"stages": flags["stages.*.strategy"]}  # the list of stages as a whole


def describe_keys(keys: tuple[str, ...], source: str | None = None) -> str:
    """The options ``keys`` as a user sees them: each flag with its configuration key, e.g.
    ``--size (data.size)``, ``--lr (stages[1].lr in run.yaml)``; keys that are flags stay as they are."""
    flags = flag_names()
    shown = [k for k in keys if k]
    names = []
    for k in shown:
        general = re.sub(r"\[\d+\]", ".*", k)
        if k.startswith("-"):
            names.append(k)
        elif general in flags or k in flags:
            names.append(flags.get(general) or flags[k])
    config = [k for k in shown if not k.startswith("-")]
    where = ", ".join(config) + (f" in {source}" if source and config else "")
    if names and where:
        return f"{', '.join(names)} ({where})"
    return ", ".join(names) or where or (source or "")


def config_from_args(a: argparse.Namespace) -> Any:
    """The :class:`~medcolor.config.RunConfig` of ``medcolor train``: ``--config`` (if given), then the flags."""
    from medcolor.config import RunConfig, read_yaml

    d: dict[str, Any] = read_yaml(a.config) if a.config else {}
    apply_flags(d, a)
    d.setdefault("stages", [{"strategy": "color-module"}])
    return RunConfig.from_dict(d, where=a.config)


__all__ = ["CONFIG_FLAGS", "Parser", "apply_flags", "build_parser", "config_from_args", "describe_keys", "flag_names"]
