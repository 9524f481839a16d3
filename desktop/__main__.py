"""``python -m stagewise.desktop`` is the ``stagewise`` command."""

from stagewise.desktop.cli import main

raise SystemExit(main())
