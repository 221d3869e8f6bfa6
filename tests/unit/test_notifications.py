"""Group names and payloads of `notifications.py`; publish() on a real InMemoryChannelLayer."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from django.test import override_settings

from async_request.auth import Owner
from async_request.notifications import client_payload, group_for, layer_message, publish
from tests.asgi_apps import drain

#: channels' own rule for group names (channels/layers.py `valid_group_name`).
GROUP_NAME = re.compile(r"^[a-zA-Z\d\-_.]{1,99}$")
MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.mark.parametrize(("victim", "spy"), [
    ("alice@example.com", "alice_example.com"),
    ("X" * 64 + "alice", "X" * 64 + "bob"),
    ("éric", "_ric"),
    ("alice+1@x.io", "alice_1_x.io"),
])
def test_owners_that_an_old_rewrite_merged_get_their_own_groups(victim: str, spy: str) -> None:
    assert group_for(Owner("user", victim)) != group_for(Owner("user", spy))


@pytest.mark.parametrize("owner", [
    Owner("user", "42"), Owner("user", "x" * 5000), Owner("user", "\n é \u2028"),
    Owner("anon", "abcdefghij_KLMNOP-12345"),
])
def test_group_names_are_always_valid_and_kept_apart_by_kind(owner: Owner) -> None:
    name = group_for(owner)
    assert GROUP_NAME.match(name), name
    other = Owner("anon" if owner.kind == "user" else "user", owner.ident)
    assert group_for(other) != name


def test_client_payload_keeps_the_original_wire_format() -> None:
    payload = client_payload("t-1", "completed")
    assert payload["type"] == "data"
    assert json.loads(payload["data"]) == {"task_id": "t-1", "status": "completed",
                                           "action": "async_request"}


def test_publish_reaches_the_owners_group_only() -> None:
    from channels.layers import channel_layers

    with override_settings(CHANNEL_LAYERS=MEMORY_LAYER):
        channel_layers.backends.clear()
        layer = channel_layers["default"]
        alice, bob = Owner("user", "alice@example.com"), Owner("user", "alice_example.com")

        async def join() -> tuple[str, str]:
            mine, theirs = await layer.new_channel(), await layer.new_channel()
            await layer.group_add(group_for(alice), mine)
            await layer.group_add(group_for(bob), theirs)
            return mine, theirs

        # publish() runs its coroutine on its own loop thread; the memory layer is loop-agnostic.
        mine, theirs = asyncio.run(join())
        assert publish(alice, "t-1", "completed") is True

        assert asyncio.run(drain(layer, mine)) == [layer_message("t-1", "completed")]
        assert asyncio.run(drain(layer, theirs)) == []
    channel_layers.backends.clear()
