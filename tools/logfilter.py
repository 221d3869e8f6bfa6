"""Access logs without query strings: `?token=`, `?access_token=`, `?channel=` are credentials.

uvicorn logs every HTTP request (`uvicorn.access`) and every WebSocket (`uvicorn.error`,
'"WebSocket /ws/?token=..." [accepted]') with its query string. `DropQueryStrings` cuts each
logged path at its `?`; `log_config()` is the uvicorn `--log-config` that installs it.
"""

from __future__ import annotations

import logging
from typing import Any


def _without_query(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("/") and "?" in value:
        return value.split("?", 1)[0] + "?…"
    return value


class DropQueryStrings(logging.Filter):
    """Replace the query string of every logged path with an ellipsis."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query(arg) for arg in record.args)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default logging, with query strings dropped from access and WebSocket lines."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG, "filters": {
        "drop_query": {"()": "tools.logfilter.DropQueryStrings"}}}
    config["handlers"] = {name: {**handler, "filters": ["drop_query"]}
                          for name, handler in LOGGING_CONFIG["handlers"].items()}
    return config
