"""``python -m busutils`` runs the command line (see :mod:`busutils.cli`)."""

from .cli import main

raise SystemExit(main())
