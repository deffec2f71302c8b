"""``python -m modelconv`` runs the CLI."""

import sys

from modelconv.cli import main

sys.exit(main())
