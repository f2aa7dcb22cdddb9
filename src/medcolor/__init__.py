"""medcolor — transfer learning through colorization for grayscale medical images.

The paper's parts: T (:mod:`medcolor.colorizers`), E (:mod:`medcolor.backbones`), C and the whole
network (:mod:`medcolor.model`), the learning strategies (:mod:`medcolor.strategies`), the datasets
(:mod:`medcolor.data`), training (:mod:`medcolor.training`) and evaluation (:mod:`medcolor.evaluation`).

In a notebook::

    import medcolor
    cfg = medcolor.RunConfig.from_yaml("configs/examples/kermany.yaml")      # or RunConfig(...) / from_dict
    result = medcolor.train(cfg)                                    # a run directory, its AUCs
    metrics, _ = medcolor.evaluate(result.directory)                # its held-out split again
    model = medcolor.load(result.directory)                         # labels, normalisation, size on board
    probs = model.predict(images)                                   # a DataFrame: one column per label

Every name here is imported from its module on first use, so ``import medcolor`` stays fast (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

from medcolor._version import __version__
from medcolor.quiet import route_medcolor_warnings

route_medcolor_warnings()  # medcolor's warnings as one log line, not file:line + source

#: public name -> (module, attribute)
_WHERE: dict[str, tuple[str, str]] = {
    "RunConfig": ("medcolor.config", "RunConfig"),
    "train": ("medcolor.training.pipeline", "train"),
    "evaluate": ("medcolor.inference", "evaluate_model"),
    "predict": ("medcolor.inference", "predict_files"),
    "load": ("medcolor.io", "load_network"),
    "Backbone": ("medcolor.backbones", "Backbone"),
    "create_backbone": ("medcolor.backbones", "create_backbone"),
    "list_backbones": ("medcolor.backbones", "list_backbones"),
    "Colorizer": ("medcolor.colorizers", "Colorizer"),
    "create_colorizer": ("medcolor.colorizers", "create_colorizer"),
    "list_colorizers": ("medcolor.colorizers", "list_colorizers"),
    "register_colorizer": ("medcolor.colorizers", "register_colorizer"),
    "ConfigError": ("medcolor.errors", "ConfigError"),
    "DataError": ("medcolor.errors", "DataError"),
    "ImageReadError": ("medcolor.errors", "ImageReadError"),
    "MedcolorError": ("medcolor.errors", "MedcolorError"),
    "TrainingError": ("medcolor.errors", "TrainingError"),
    "WeightsError": ("medcolor.errors", "WeightsError"),
    "load_colorizer": ("medcolor.io", "load_colorizer"),
    "load_model": ("medcolor.io", "load_model"),
    "save_colorizer": ("medcolor.io", "save_colorizer"),
    "save_model": ("medcolor.io", "save_model"),
    "ClassifierHead": ("medcolor.model", "ClassifierHead"),
    "ColorTransferNet": ("medcolor.model", "ColorTransferNet"),
    "Strategy": ("medcolor.strategies", "Strategy"),
    "get_strategy": ("medcolor.strategies", "get_strategy"),
    "list_strategies": ("medcolor.strategies", "list_strategies"),
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module, attr = _WHERE[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    try:  # a submodule (medcolor.backbones...), as after an eager import
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'medcolor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = ["__version__", *_WHERE]
