"""``python -m desktop`` is the ``stagewise`` command."""

from desktop.cli import main

raise SystemExit(main())
