"""`python -m promptregister` is the same as the `promptregister` command."""

import sys

from .launch import main

sys.exit(main())
