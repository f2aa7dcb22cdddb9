"""The ``medcolor`` command: a thin layer over the Python API.

Every ``train`` option can come from a YAML file (``--config run.yaml``); flags given on the command
line override the file — :data:`~medcolor.cli.parser.CONFIG_FLAGS` is the one table of which flag sets
which configuration key.  Errors in input files or options are printed as one clear message (exit 2).
Library messages come through the ``medcolor`` logger (:func:`configure_logging`: INFO as plain lines,
``-v`` adds DEBUG).

``parser`` builds the argument parser and applies the flags; ``commands`` holds one function per command.
"""

from __future__ import annotations

import sys

from medcolor.cli.parser import CONFIG_FLAGS, apply_flags, build_parser, config_from_args, describe_keys
from medcolor.errors import MedcolorError, OptionError

# ``medcolor --help`` / ``COMMAND --help`` import neither torch nor Lightning (seconds): the commands and
# :mod:`medcolor.utils` are imported once the arguments are parsed.


def configure_logging(verbose: bool = False) -> None:
    """:func:`medcolor.utils.configure_logging` (imported on first use: it imports torch)."""
    from medcolor.utils import configure_logging as configure

    configure(verbose)


def quiet_lightning() -> None:
    """:func:`medcolor.utils.quiet_lightning` (imported on first use: it imports Lightning)."""
    from medcolor.utils import quiet_lightning as quiet

    quiet()


def error_message(exc: BaseException) -> str:
    """One line for the terminal: an option's flag and configuration key beside the problem; the path
    and the system's reason for a failed file operation."""
    if isinstance(exc, OptionError):
        text = f"{describe_keys(exc.keys, exc.source)}: {exc.problem}"
    elif isinstance(exc, OSError) and not isinstance(exc, MedcolorError):
        path = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        text = f"{exc.strerror or type(exc).__name__}: {path}" if path else f"{exc.strerror or exc}"
    else:
        text = str(exc)
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not a.command:
        ap.print_help()
        return 0
    from medcolor.cli.commands import COMMANDS

    configure_logging(a.verbose)
    if not a.verbose:
        quiet_lightning()
    try:
        return COMMANDS[a.command](a)
    except (MedcolorError, OSError) as exc:
        if a.verbose:
            raise
        print(f"medcolor {a.command}: error: {error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nmedcolor {a.command}: interrupted. Re-run the same command to resume from the last checkpoint.",
            file=sys.stderr,
        )
        return 130


__all__ = [
    "CONFIG_FLAGS",
    "apply_flags",
    "build_parser",
    "config_from_args",
    "configure_logging",
    "error_message",
    "main",
]
