"""`python -m service`: run the API (WEB_CONCURRENCY processes on PORT)."""

from __future__ import annotations

import sys

from service.api.app import create_app
from service.runtime.process import API, serve

if __name__ == "__main__":
    sys.exit(serve(API, create_app, shutdown_timeout=2))
