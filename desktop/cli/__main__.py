"""``python -m desktop.cli`` is the ``stagewise`` command, as ``python -m desktop`` is."""

from desktop.cli import main

raise SystemExit(main())
