"""Entry point for ``python -m configdrive``."""

from configdrive.cli import main

raise SystemExit(main())
