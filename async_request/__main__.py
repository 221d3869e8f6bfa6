"""`python -m async_request`: the same command line as `async-request` (async_request/cli.py)."""

from __future__ import annotations

from async_request.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
