"""The manual (`kafka.py`'s docstring) lists exactly the transport options, with their defaults.

Executed documentation, as httpx tests that `__all__` is what a module exports: an option
added to `KafkaOptions` without a line in the manual, a default changed on one side only, or
a documented option that no longer exists fails here.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Any

from async_request.transport import _channel, kafka
from async_request.transport._options import KafkaOptions

#: Documented in the option list, but kombu's (the transport ignores it).
NOT_OURS = {"polling_interval"}


def _option_section() -> str:
    doc = kafka.__doc__ or ""
    start = doc.index("Transport options\n=================")
    return doc[start:doc.index("\n\n", doc.index("* ``", start))]


def _documented_defaults() -> dict[str, Any]:
    """``name`` (default) pairs of the option list, the default as a Python value."""
    found: dict[str, Any] = {}
    for name, text in re.findall(r"``(\w+)`` \(([^)]*)\)", _option_section()):
        literal = text.replace("``", "").removesuffix(" s")
        found[name] = ast.literal_eval(literal)
    return found


def test_the_manual_names_every_option_and_nothing_else() -> None:
    documented = set(re.findall(r"``(\w+)``", _option_section())) - NOT_OURS
    assert documented == {option.name for option in dataclasses.fields(KafkaOptions)}


def test_the_manual_gives_the_declared_defaults() -> None:
    declared = KafkaOptions()
    documented = _documented_defaults()
    assert len(documented) >= 20  # the pattern still matches the manual's style
    for name, value in documented.items():
        default = getattr(declared, name)
        if isinstance(default, frozenset):
            value = frozenset(value)
        assert value == default, f"manual: {name} ({value!r}), KafkaOptions: {default!r}"


def test_the_options_default_to_what_the_fields_declare() -> None:
    assert KafkaOptions.from_transport_options({}) == KafkaOptions()


def test_the_manual_names_the_transport_path() -> None:
    assert f'broker_transport = "{kafka.TRANSPORT_PATH}"' in (kafka.__doc__ or "")


def test_kafka_exports_its_public_classes_and_functions() -> None:
    """Everything public that kafka.py defines or takes from `_channel.py`, and nothing else."""
    homes = {kafka.__name__, _channel.__name__}
    public = {name for name, value in vars(kafka).items()
              if not name.startswith("_") and getattr(value, "__module__", "") in homes}
    assert sorted(kafka.__all__) == sorted(public | {"TRANSPORT_PATH"})
