"""``python -m medcolor``: the ``medcolor`` command."""

from medcolor.cli import main

raise SystemExit(main())
