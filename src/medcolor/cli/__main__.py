from medcolor.cli import main

raise SystemExit(main())
