"""``python -m gradatim`` runs the command line."""

from gradatim.cli import main

raise SystemExit(main())
