"""Entry point for `python -m cxr_helpers`."""

import sys

from cxr_helpers.cli import main

sys.exit(main())
