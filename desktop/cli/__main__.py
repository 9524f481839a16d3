"""``python -m stagewise.desktop.cli`` is the ``stagewise`` command."""

from stagewise.desktop.cli import main

raise SystemExit(main())
