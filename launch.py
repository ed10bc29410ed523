"""``python launch.py ...``: the ``insights-app`` command line, run from a checkout.

The command line lives in :mod:`insights_app.cli` (one module per subcommand); this file only
keeps ``python launch.py`` and ``import launch; launch.main([...])`` working.
"""

from __future__ import annotations

import sys

from insights_app.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
