"""`python -m promptregister` is the same as the `promptregister` command."""

import sys

from .cli import main

sys.exit(main())
