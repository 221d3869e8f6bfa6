"""Import an object named by a dotted path setting ('package.module:attribute')."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from async_request.exceptions import ConfigurationError


def import_object(path: str, default_attr: str, setting: str) -> Any:
    """The object at `path` (attribute `default_attr` when none is named); errors name `setting`."""
    module_name, _, attr = path.partition(":")
    try:
        return getattr(import_module(module_name), attr or default_attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"setting {setting} = {path!r}: {exc}") from exc
