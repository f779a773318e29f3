"""Entry point for `python -m cxr_helpers`."""

import sys

from cxr_helpers.cli import main

if __name__ == "__main__":  # guard: worker processes re-import this module on macOS/Windows
    sys.exit(main())
