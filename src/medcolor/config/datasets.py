"""The dataset options of a data source (``data:`` or ``test_sets.<name>:``): keyword arguments its dataset class
takes, checked against the registry before any file is read."""

from __future__ import annotations

from typing import Any

from medcolor.errors import OptionError, UnknownNameError

#: dataset constructor arguments that have their own option (never a ``data.options`` key)
_OWN_OPTIONS = {"root": "data.root", "csv": "data.csv", "load_size": "data.size", "cache": "data.cache_dir"}
_OWN_OPTIONS |= {"on_missing": "data.on_missing", "transform": "", "options": ""}


def check_dataset_options(d: Any, key: str = "data") -> None:
    """``data.options`` (or ``test_sets.<name>.options``, ``key``) are keyword arguments the dataset class takes
    (unknown keys named with the valid ones)."""
    from medcolor.data.datasets import DATASETS, dataset_options

    try:
        cls = DATASETS.get(d.dataset)
    except UnknownNameError:
        names = ", ".join(DATASETS.names())
        raise OptionError(f"{key}.dataset", f"unknown dataset {d.dataset!r}; valid datasets: {names}") from None
    valid = dataset_options(cls)
    for k in d.options:
        if not isinstance(k, str) or not k.strip():
            raise OptionError(f"{key}.options", f"option names must be non-empty words, got {k!r}")
        if k == "split" and key != "data":
            raise OptionError(f"{key}.options", f"'split' is not a dataset option here; set {key}.split")
        if k in _OWN_OPTIONS:
            own = _OWN_OPTIONS[k].replace("data.", f"{key}.") if key != "data" else _OWN_OPTIONS[k]
            raise OptionError(f"{key}.options", f"{k!r} is not a dataset option" + (f"; set {own}" if own else ""))
        if k not in valid:
            raise OptionError(
                f"{key}.options", f"dataset {d.dataset!r} has no option {k!r}; valid options: {', '.join(valid)}"
            )
    cls.check_options(dict(d.options), f"{key}.options")
