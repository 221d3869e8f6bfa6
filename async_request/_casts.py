"""Casters of setting values: each turns a raw value (Django setting or environment text) into
the typed value, or raises ValueError saying what was expected. `settings.py` names the setting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

#: The words every yes/no value of this package accepts (settings and request headers).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value.strip()


def non_empty(value: Any) -> str:
    text = as_str(value)
    if not text:
        raise ValueError("must not be empty")
    return text


def as_int(minimum: int) -> Callable[[Any], int]:
    def cast(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        number = int(value)
        if number < minimum:
            raise ValueError(f"must be >= {minimum}")
        return number

    return cast


def as_float(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be > 0")
    return number


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")


def as_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            value = json.loads(text)
        else:
            value = [part for part in (p.strip() for p in text.split(",")) if part]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def as_dict(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping (a JSON object in the environment)")
    return dict(value)


def one_of(*choices: str) -> Callable[[Any], str]:
    def cast(value: Any) -> str:
        text = as_str(value).lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return cast


def log_level(value: Any) -> str:
    text = as_str(value).upper()
    if text not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return text


def path_prefix(value: Any) -> str:
    text = non_empty(value)
    if not text.startswith("/"):
        raise ValueError("must start with /")
    return text if text.endswith("/") else text + "/"


def dotted(value: Any) -> str:
    text = as_str(value)
    if text and not all(part.isidentifier() for part in text.replace(":", ".").split(".")):
        raise ValueError("expected a dotted path like 'package.module:attribute'")
    return text


def _route(item: str, form: str, head: str | None = None) -> tuple[str, re.Pattern[str]]:
    """`head` (default: all of `item`) as METHOD and regex; errors quote the whole `item`."""
    method, _, pattern = (item if head is None else head).strip().partition(" ")
    if not method.isalpha() or not pattern.strip():
        raise ValueError(f"{item!r} is not {form!r}")
    try:
        return method.upper(), re.compile(pattern.strip())
    except re.error as exc:
        raise ValueError(f"{item!r}: {pattern.strip()!r} is not a regular expression: {exc}"
                         ) from exc


def routes(value: Any) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple(_route(item, "METHOD /path-regex") for item in as_list(value))


def route_values(form: str, last: Callable[[str], Any]
                 ) -> Callable[[Any], tuple[tuple[str, re.Pattern[str], Any], ...]]:
    """A caster of `"METHOD path-regex <value>"` entries (`form`): the value is the last word,
    cast by `last`, whose ValueError says what it expected; errors quote the whole entry."""
    def cast(value: Any) -> tuple[tuple[str, re.Pattern[str], Any], ...]:
        entries = []
        for item in as_list(value):
            head, _, word = item.strip().rpartition(" ")
            try:
                parsed = last(word)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not {form!r}: {exc}") from None
            entries.append((*_route(item, form, head), parsed))
        return tuple(entries)

    return cast


def _seconds(word: str) -> float:
    try:
        limit = float(word)
    except ValueError:
        raise ValueError(f"{word!r} is not seconds") from None
    if not limit > 0 or limit == float("inf"):
        raise ValueError("the seconds must be a number above 0")
    return limit


#: What a lane's name may hold: it becomes part of a Kafka topic's name (letters, digits, `.`,
#: `_`, `-`), and `,` separates lanes on a worker's command line.
LANE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def lane_name(word: str) -> str:
    """A lane's name, or ValueError saying what a name may hold."""
    if not LANE_NAME.fullmatch(word):
        raise ValueError(f"{word!r} is not a lane name (1-64 letters, digits, '_' or '-')")
    return word


#: `"METHOD path-regex seconds"` entries (ASYNC_REQUEST_ROUTE_TIMEOUTS).
route_timeouts = route_values("METHOD /path-regex seconds", _seconds)
#: `"METHOD path-regex lane"` entries (ASYNC_REQUEST_LANES).
route_lanes = route_values("METHOD /path-regex lane", lane_name)


def as_redis_url(value: Any) -> str:
    text = non_empty(value)
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a URL like redis://host:6379/0 (or rediss://, unix://)")
    return text


def as_broker_url(value: Any) -> str:
    """A Celery broker URL; a kafka:// one names all its brokers in one URL, with ','.

    Brokers after ';' would be kombu failover alternates: after a failed publish kombu cycles
    to the next one, and the round trip back to the first (now read without our transport's
    alias) loads kombu's own Kafka transport, whose publishes our workers never see (seen
    with a broker SIGKILLed: 500s for requests whose tasks still ran).
    """
    text = as_str(value).strip()
    if text.startswith("kafka://") and ";" in text:
        fixed = "kafka://" + ",".join(part.strip().removeprefix("kafka://")
                                      for part in text.split(";") if part.strip())
        raise ValueError(f"list the brokers in one URL with ',' ({fixed}), not with ';' "
                         "(kombu failover alternates, which leave our transport)")
    return text


def non_empty_list(value: Any) -> tuple[str, ...]:
    items = as_list(value)
    if not items:
        raise ValueError("must not be empty")
    return items
