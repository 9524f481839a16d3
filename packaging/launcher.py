"""The bundles' entry point: the same ``stagewise`` command pip installs."""

import sys

from stagewise.desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
