"""`python -m bridge` does exactly what the `rapture` console script does."""

from bridge.cli import main

raise SystemExit(main())
