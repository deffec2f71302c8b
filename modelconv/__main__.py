"""``python -m modelconv`` runs the CLI."""

import sys

from modelconv.cli import main

if __name__ == "__main__":  # importing the module (docs tools inspect it) runs nothing
    sys.exit(main())
