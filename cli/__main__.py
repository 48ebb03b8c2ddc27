"""``python -m veclink.cli ...`` runs the ``veclink`` command."""

from __future__ import annotations

import sys

from veclink.cli.main import main

sys.exit(main())
