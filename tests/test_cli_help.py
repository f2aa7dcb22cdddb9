"""Every command's ``--help`` prints its text and exits 0 (an empty argparse group made ``train --help`` crash)."""

from __future__ import annotations

import pytest

from medcolor.cli.parser import build_parser


def _commands() -> list[str]:
    ap = build_parser()
    sub = next(a for a in ap._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _commands())
def test_help_of_every_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert f"medcolor {command}" in capsys.readouterr().out
