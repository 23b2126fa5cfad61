"""python -m promptregister.worker: serve the JSON-lines protocol on stdin/stdout."""

import sys

from .server import main

sys.exit(main())
