"""Subscription tickets: minted for a user, accepted only for subscribing, only for a while."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from async_request.auth import Owner
from async_request.exceptions import AuthenticationError
from async_request.seal import seal
from async_request.settings import Settings
from async_request.tickets import _INFO, TICKET_PREFIX, issue, ticket_owner

SETTINGS = replace(Settings(), secret_key="k" * 40, ticket_ttl_sec=300)
ALICE = Owner("user", "alice")


def test_a_ticket_names_its_owner_until_it_expires() -> None:
    ticket = issue(ALICE, SETTINGS, now=1000.0)
    assert ticket.value.startswith(TICKET_PREFIX) and ticket.expires_at == 1300.0
    assert ticket_owner(ticket.value, SETTINGS, now=1299.0) == ALICE
    with pytest.raises(AuthenticationError, match="expired"):
        ticket_owner(ticket.value, SETTINGS, now=1300.0)


def test_the_owner_is_not_readable_in_the_ticket() -> None:
    assert "alice" not in issue(ALICE, SETTINGS).value


def test_an_anonymous_owner_gets_no_ticket() -> None:
    with pytest.raises(AuthenticationError, match="channel"):
        issue(Owner("anon", "0" * 32), SETTINGS)


@pytest.mark.parametrize("value", [
    "not-a-ticket",
    TICKET_PREFIX + "gAAAA-garbage",
    # sealed with the key of queued requests and results: never a ticket
    TICKET_PREFIX + seal(json.dumps({"purpose": "subscribe", "owner": "user:alice",
                                     "exp": 2e9}).encode(), SETTINGS.secret_key),
])
def test_forged_and_foreign_values_are_refused(value: str) -> None:
    with pytest.raises(AuthenticationError, match="not one this server issued|forged"):
        ticket_owner(value, SETTINGS)


def test_another_secret_key_or_an_altered_ticket_is_refused() -> None:
    ticket = issue(ALICE, SETTINGS).value
    with pytest.raises(AuthenticationError, match="forged"):
        ticket_owner(ticket, replace(SETTINGS, secret_key="o" * 40))
    altered = ticket[:-6] + ("A" if ticket[-6] != "A" else "B") + ticket[-5:]
    with pytest.raises(AuthenticationError, match="forged"):
        ticket_owner(altered, SETTINGS)


@pytest.mark.parametrize("claims", [
    {"purpose": "download", "owner": "user:alice", "exp": 2e9},
    {"owner": "user:alice", "exp": 2e9},
    {"purpose": "subscribe", "owner": "anon:" + "0" * 32, "exp": 2e9},
    {"purpose": "subscribe", "owner": "nobody", "exp": 2e9},
    ["subscribe"],
])
def test_a_ticket_for_another_purpose_or_owner_kind_is_refused(claims: object) -> None:
    value = TICKET_PREFIX + seal(json.dumps(claims).encode(), SETTINGS.secret_key, info=_INFO)
    with pytest.raises(AuthenticationError, match="not for subscribing"):
        ticket_owner(value, SETTINGS)
