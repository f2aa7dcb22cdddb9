"""medcolor — transfer learning through colorization for grayscale medical images.

The paper's parts: T (:mod:`medcolor.colorizers`), E (:mod:`medcolor.backbones`), C and the whole
network (:mod:`medcolor.model`), the learning strategies (:mod:`medcolor.strategies`), the datasets
(:mod:`medcolor.data`), training (:mod:`medcolor.training`) and evaluation (:mod:`medcolor.evaluation`).
"""

from medcolor._version import __version__
from medcolor.backbones import Backbone, create_backbone, list_backbones
from medcolor.colorizers import Colorizer, create_colorizer, list_colorizers, register_colorizer
from medcolor.errors import ConfigError, DataError, ImageReadError, MedcolorError, TrainingError, WeightsError
from medcolor.io import load_colorizer, load_model, save_colorizer, save_model
from medcolor.model import ClassifierHead, ColorTransferNet
from medcolor.quiet import route_medcolor_warnings
from medcolor.strategies import Strategy, get_strategy, list_strategies

route_medcolor_warnings()  # medcolor's warnings as one log line, not file:line + source

__all__ = [
    "Backbone",
    "ClassifierHead",
    "ColorTransferNet",
    "Colorizer",
    "ConfigError",
    "DataError",
    "ImageReadError",
    "MedcolorError",
    "Strategy",
    "TrainingError",
    "WeightsError",
    "__version__",
    "create_backbone",
    "create_colorizer",
    "get_strategy",
    "list_backbones",
    "list_colorizers",
    "list_strategies",
    "load_colorizer",
    "load_model",
    "register_colorizer",
    "save_colorizer",
    "save_model",
]
