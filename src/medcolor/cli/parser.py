"""The ``medcolor`` command line: its parser, whose configuration flags are generated from the fields of
:class:`~medcolor.config.RunConfig` (name, type, choices, and the field's ``#:`` comment as the help), and
:data:`CONFIG_FLAGS`, which flag sets which configuration key.  ``medcolor train`` applies them over
``--config`` with :func:`~medcolor.config.apply_overrides` (as study grids do); ``evaluate`` its ``data.*`` ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from typing import Any, Literal, NoReturn

import yaml

from medcolor.config import (
    Auto,
    RunConfig,
    apply_overrides,
    config_fields,
    field_docs,
    read_yaml,
    section_of,
)
from medcolor.yamlio import yaml_problem

#: the flags example of ``train --help`` and the same run as YAML (tests/cli/test_cli_help.py parses both)
TRAIN_EXAMPLE_FLAGS = """medcolor train --dataset folder --root ../shared/data/kermany-pneumonia-224/train \\
      --option patient_regex=kermany --size 224 --backbone mobilenet_v2 \\
      --weights ../shared/weights/mobilenet_v2-imagenet-features.pth \\
      --colorizer pixelshuffle --stages color-module,all --lr find --epochs 2 --output runs/kermany"""
TRAIN_EXAMPLE_YAML = """data: {dataset: folder, root: ../shared/data/kermany-pneumonia-224/train, size: 224,
      options: {patient_regex: kermany}}
    model: {colorizer: pixelshuffle, backbone: mobilenet_v2,
      weights: ../shared/weights/mobilenet_v2-imagenet-features.pth}
    stages: [{strategy: color-module, lr: find, epochs: 2}, {strategy: all, lr: find, epochs: 2}]
    output: runs/kermany"""
EPILOG_TRAIN = f"""examples:
  # the paper's two-stage procedure on a folder dataset, MobileNetV2 with local ImageNet weights
  {TRAIN_EXAMPLE_FLAGS}
  # the same run as a YAML file (medcolor train --config run.yaml):
    {TRAIN_EXAMPLE_YAML}
  # a YAML file with one option changed by a flag
  medcolor train --config configs/examples/kermany.yaml --epochs 1
  # transfer T and E of that run to ChestX-ray14, train only the last layer
  medcolor train --config configs/examples/nih-last-layer.yaml --init-from runs/kermany
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``medcolor train: error: argument --size: invalid int value: 'x'``
    and a pointer to ``--help`` instead of the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    if not k.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a KEY, got {text!r}")
    try:
        return k.strip(), yaml.safe_load(v)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"the value of {k.strip()} is not valid YAML: {yaml_problem(exc)}") from None


def _number_or_word(number: type, words: tuple[str, ...]) -> Any:
    """An argparse type: a number or one of ``words`` (``--num-workers 4|auto``, ``--mean 0.5|compute``)."""
    shown = " or ".join("auto" if w == "auto" else repr(w) for w in words)

    def convert(text: str) -> Any:
        if text.strip().lower() in words:
            return text.strip().lower()
        try:
            return number(text)
        except ValueError:
            what = "an integer" if number is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what} or {shown}, got {text!r}") from None

    return convert


#: ``none`` given for an optional value (argparse's None means "not given")
NONE = object()


def _none_or_text(text: str) -> Any:
    """An optional value: ``none`` (or nothing) is :data:`NONE`; other text is parsed by the configuration."""
    return NONE if text.strip().lower() in {"none", "null", ""} else text


@dataclasses.dataclass(frozen=True)
class Flag:
    """A command-line flag that sets a configuration key."""

    dest: str
    key: str
    options: tuple[str, ...]
    kwargs: dict[str, Any]
    group: str


def _flag_type(tp: Any, meta: Any) -> dict[str, Any]:
    """The argparse keywords that read a value of the field type ``tp`` (the configuration checks it)."""
    args, origin = typing.get_args(tp), typing.get_origin(tp)
    words = tuple(w for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a))
    if origin is dict:
        return {"action": "append", "type": _kv, "metavar": "KEY=VALUE"}
    if origin is Literal:
        return {"choices": list(args)} if meta.get("strict") else {}
    if tp in (int, float):
        return {"type": tp}
    if Auto in args or words:
        return {"type": _number_or_word(int if int in args else float, words or ("auto",))}
    return {"type": _none_or_text} if type(None) in args else {}


def _flag(key: str, name: str, tp: Any, meta: Any, default: Any, doc: str) -> Flag:
    """The flag of one configuration field: ``--NAME`` (or ``meta["flag"]``), ``--no-NAME`` for a switch that is on."""
    flag = meta.get("flag") or f"--{name.replace('_', '-')}"
    kw: dict[str, Any] = {"help": doc.replace("%", "%%") or None}
    if tp is bool:
        flag = f"--no-{flag[2:]}" if default else flag
        kw |= {"action": "store_const", "const": not default}
        kw["help"] = f"turn off (on by default): {kw['help']}" if default and kw["help"] else kw["help"]
    else:
        kw |= _flag_type(tp, meta)
    options = ("-o", flag) if flag == "--output" else (flag,)
    dest = flag[2:].removeprefix("no-").replace("-", "_")
    return Flag(dest, key, options, kw, key.split(".")[0] if "." in key else "run")


def _flags() -> list[Flag]:
    out = []
    for key, cls, f, tp in config_fields(RunConfig):
        if section_of(tp) is None and not key.startswith("test_sets."):  # a value, not of a named test set
            flag_key = "stages" if key == "stages.*.strategy" else key
            out.append(_flag(flag_key, f.name, tp, f.metadata, f.default, field_docs(cls).get(f.name, "")))
    return out


FLAGS: list[Flag] = _flags()
#: command-line flag destination -> the configuration key it sets (``stages.*.KEY``: KEY of every stage;
#: ``stages``: the list of stages, one per comma-separated strategy, each with the first stage's settings)
CONFIG_FLAGS: dict[str, str] = {f.dest: f.key for f in FLAGS}
#: the data flags of ``medcolor evaluate``
EVALUATE_DATA_FLAGS = ("dataset", "root", "csv", "option", "size", "batch_size", "num_workers", "cache_dir")
#: the operating-point flags of ``medcolor evaluate`` (those of ``operating:``)
EVALUATE_OPERATING_FLAGS = tuple(f.dest for f in FLAGS if f.group == "operating")
GROUP_TITLES = {"data": "data", "model": "model (T, E, C)", "stages": "stages and optimisation"}
GROUP_TITLES |= {"trainer": "hardware", "operating": "operating points", "run": "run"}


def _add_config_flags(p: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for f in FLAGS:
        if only is not None and f.dest not in only:
            continue
        if f.group not in groups:
            groups[f.group] = p.add_argument_group(GROUP_TITLES[f.group])
        g = groups[f.group]
        if f.dest in ("epochs", "iterations"):  # a stage's length is one or the other
            if "length" not in groups:  # (setdefault would make a second, empty group: argparse fails on it)
                groups["length"] = g.add_mutually_exclusive_group()
            g = groups["length"]
        g.add_argument(*f.options, dest=f.dest, **f.kwargs)
    return groups


def build_parser() -> argparse.ArgumentParser:
    from medcolor._version import __version__
    from medcolor.cli.export import add_parser as add_export_parser
    from medcolor.cli.study import add_parser as add_study_parser

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
    for add in (_add_train, _add_evaluate, _add_predict, _add_colorize, _add_explain, _add_export_colorizer):
        add(sub)
    add_export_parser(sub)
    for add in (_add_stats, _add_demo, _add_list, add_study_parser):
        add(sub)
    return ap


def _add_train(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train T/E/C with one or more strategies (stages)",
        epilog=EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--config", help="a YAML run configuration; flags override it")
    g = _add_config_flags(t)["run"]
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


def _add_evaluate(sub: Any) -> None:
    e = sub.add_parser("evaluate", help="AUCs of a trained network on a dataset (per label, mean, 95%% CI)")
    e.add_argument("model", metavar="RUN_OR_MODEL", help="a run directory or a model.safetensors")
    e.add_argument("--config", help="YAML with a data: section (default: the run's own test split)")
    groups = _add_config_flags(e, EVALUATE_DATA_FLAGS + EVALUATE_OPERATING_FLAGS)
    groups["operating"].description = (
        "thresholds chosen on the run's validation predictions (RUN/val/predictions.csv), applied to the evaluated "
        "data and every --test-set; without these flags, the run's own operating: section"
    )
    e.add_argument("--split", help="official split of the dataset to evaluate (e.g. valid, test)")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the 95%% CI (default 1000)")
    e.add_argument("--precision", default="32-true", help="32-true (default, as predict) | bf16-mixed | auto")
    e.add_argument("-o", "--output", help="directory for metrics.json and predictions.csv")
    e.add_argument(
        "--test-set",
        action="append",
        type=_kv,
        metavar="NAME=FILE.yaml",
        help="also evaluate on the external test set NAME described by FILE.yaml (one test_sets entry: dataset, "
        "root, csv, options, split, labels, allow_overlap); repeatable; writes RUN/test_sets/NAME/",
    )


def _add_images(p: argparse.ArgumentParser, dest: str, metavar: str, what: str, output: str | None = None) -> None:
    """The network (or T, ``dest``) and the images of predict, colorize and explain, and their output (a required
    folder, unless ``output`` says what it is)."""
    p.add_argument(dest, metavar=metavar, help=what)
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files (PNG/JPEG/DICOM) or folders of them")
    p.add_argument("-o", "--output", required=output is None, help=output or "output folder")


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="probabilities for image files or folders (PNG/JPEG/DICOM) as CSV")
    models = "a run directory, a model.safetensors or an exported .onnx"
    _add_images(p, "model", "CHECKPOINT", models, "CSV file (default: print to stdout)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument(
        "--precision",
        default="32-true",
        help="32-true (default: the probabilities of `evaluate` and the run's predictions.csv) | bf16-mixed "
        "(faster on CPUs with bf16, probabilities differ from fp32) | auto (bf16 where the hardware has it)",
    )
    p.add_argument("--accelerator", default="auto", help="auto | cpu | gpu")


def _add_colorize(sub: Any) -> None:
    c = sub.add_parser("colorize", help="the colour images T produces, beside the inputs (paper Fig. 4)")
    _add_images(c, "source", "CHECKPOINT_OR_T", "a run directory, model or exported colorizer")
    c.add_argument("--size", type=int, help="input size (default: the one T was trained at)")
    c.add_argument(
        "--display",
        choices=["imagenet", "minmax"],
        default="imagenet",
        help="imagenet: undo ImageNet normalisation (what E sees); minmax: stretch each image",
    )


def _add_explain(sub: Any) -> None:
    xp = sub.add_parser("explain", help="Grad-CAM maps of a network per image and label, beside T's colour image")
    _add_images(xp, "model", "MODEL", "a run directory or a model.safetensors")
    xp.add_argument("--labels", help="comma-separated label names or output indices (default: every label)")
    xp.add_argument("--size", type=int, help="input size (default: the network's)")
    xp.add_argument("--display", choices=["imagenet", "minmax"], default="imagenet", help="how T's image is shown")


def _add_export_colorizer(sub: Any) -> None:
    x = sub.add_parser("export-colorizer", help="save T of a run as safetensors + JSON metadata")
    x.add_argument("run", metavar="RUN", help="a run directory, a stage directory, or a model.safetensors")
    x.add_argument("-o", "--output", required=True, help="output .safetensors file")


def _add_stats(sub: Any) -> None:
    s = sub.add_parser("stats", help="label counts per label (positive/negative/uncertain/blank), mean/std")
    s.add_argument("dataset_name", metavar="DATASET", help="chexpert | chestxray14 | mura | csv | folder")
    s.add_argument("--root", help="the dataset's folder (as train's --root)")
    s.add_argument("--csv", help="the label CSV of a csv dataset, or another CSV than the dataset's own")
    s.add_argument(
        "--option", action="append", type=_kv, metavar="KEY=VALUE", help="a dataset option (repeatable), as train's"
    )
    s.add_argument("--split", help="an official split of the dataset (e.g. train, valid); default: all of it")
    s.add_argument("--subset", type=float, help="also count a label-proportional subset of this size")
    s.add_argument("--seed", type=int, default=0, help="seed of the --subset draw (default 0)")
    s.add_argument("--plot", help="write a bar plot like the paper's Fig. 5 to this PNG")
    s.add_argument("--mean-std", action="store_true", help="compute the pixel mean/std for normalisation")
    s.add_argument("--max-images", type=int, default=2000, help="images sampled for --mean-std")
    s.add_argument("--size", type=int, default=320, help="images are reduced to this short side first")
    s.add_argument(
        "--check",
        action="store_true",
        help="decode every image up front (as training will) and report all that cannot be read (exit 2)",
    )


def _add_demo(sub: Any) -> None:
    d = sub.add_parser("demo", help="the built-in demo: baseline vs color-module on synthetic X-rays")
    d.add_argument("-o", "--output", default="demo-run", help="output folder of both runs (default demo-run)")
    d.add_argument("--data", help="a YAML file with a data: section to run the demo on real data")
    d.add_argument("--weights", help="ImageNet weights of E (default: searched, see docs)")
    d.add_argument(
        "--backbone", default="mobilenet_v2", help="E of both runs (default mobilenet_v2; see medcolor list)"
    )
    d.add_argument("--colorizer", default="colorU", help="T of the color-module run (default colorU, the fastest)")
    d.add_argument("--epochs", type=float, default=12, help="epochs of each run (default 12)")
    d.add_argument(
        "--lr",
        default="0.02",
        help="one-cycle max lr of both runs, or 'find' (the LR range test; unreliable on the 360 synthetic images)",
    )
    d.add_argument("--no-progress", dest="progress", action="store_false", help="no periodic progress lines")


def _add_list(sub: Any) -> None:
    ls = sub.add_parser("list", help="colorizers and backbones (parameters, GFLOPs), strategies, datasets")
    ls.add_argument("--size", type=int, default=320, help="input size (px) at which GFLOPs are measured (default 320)")


def apply_flags(d: dict[str, Any], a: argparse.Namespace, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Write the flags given in ``a`` into the configuration dict ``d`` (of ``sections`` only, if given) with
    :func:`~medcolor.config.apply_overrides`, as a study grid does; ``--option KEY=VALUE`` adds to the options."""
    out: dict[str, Any] = {}
    for f in FLAGS:
        value = getattr(a, f.dest, None)
        if value is None or (sections is not None and f.key.split(".")[0] not in sections):
            continue
        if f.dest == "option":
            out |= {f"data.options.{k}": v for k, v in value}
        else:
            out[f.key] = None if value is NONE else value
    return apply_overrides(d, out)


def flag_names() -> dict[str, str]:
    """Configuration key (``data.size``, ``stages.*.lr``) -> the ``medcolor train`` flag that sets it."""
    flags = {f.key: f.options[-1] for f in FLAGS}
    return flags | {"stages.*.strategy": flags["stages"]}


def describe_keys(keys: tuple[str, ...], source: str | None = None) -> str:
    """The options ``keys`` as a user sees them: each flag with its configuration key, e.g.
    ``--size (data.size)``, ``--lr (stages[1].lr in run.yaml)``; keys that are flags stay as they are."""
    shown = [k for k in keys if k]
    names = [f for k in shown if (f := _flag_of(k)) is not None]
    config = [k for k in shown if not k.startswith("-")]
    where = ", ".join(config) + (f" in {source}" if source and config else "")
    if names and where:
        return f"{', '.join(names)} ({where})"
    return ", ".join(names) or where or (source or "")


def _flag_of(key: str) -> str | None:
    """The flag of a configuration key or of its nearest enclosing key (``stages[1].lr`` -> ``--lr``;
    ``data.options.n`` -> ``--option``), or the key itself when it is a flag; None when it has none."""
    if key.startswith("-"):
        return key
    flags, parts = flag_names(), re.sub(r"\[\d+\]", ".*", key).split(".")
    return next((flags[k] for i in range(len(parts), 0, -1) if (k := ".".join(parts[:i])) in flags), None)


def config_from_args(a: argparse.Namespace) -> RunConfig:
    """The :class:`~medcolor.config.RunConfig` of ``medcolor train``: ``--config`` (if given), then the flags."""
    d: dict[str, Any] = read_yaml(a.config) if a.config else {}
    return RunConfig.from_dict(apply_flags(d, a), where=a.config)


__all__ = [
    "CONFIG_FLAGS",
    "FLAGS",
    "Parser",
    "apply_flags",
    "build_parser",
    "config_from_args",
    "describe_keys",
    "flag_names",
]
