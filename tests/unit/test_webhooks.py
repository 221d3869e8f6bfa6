"""Completion webhooks, pure parts: which callback URLs are accepted, the signature, backoff."""

from __future__ import annotations

from dataclasses import replace

import pytest

from async_request.exceptions import CallbackRefusedError, ConfigurationError
from async_request.settings import Settings
from async_request.webhooks import backoff, callback_url, message_id, sign

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ON = replace(Settings(), callback_hosts=("hooks.example.com", "127.0.0.1:9000", "*.corp.io"),
             webhook_secret=SECRET)


def test_the_signature_is_the_standard_webhooks_one() -> None:
    # The example of the Standard Webhooks specification (id, timestamp, body, secret).
    assert sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}',
                SECRET) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_malformed_secret_is_a_configuration_error_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="ASYNC_REQUEST_WEBHOOK_SECRET"):
        sign("msg_x", 1, b"{}", "whsec_not base64!")


@pytest.mark.parametrize("url", [
    "https://hooks.example.com/done", "http://HOOKS.example.com:8443/x?token=1",
    "http://127.0.0.1:9000/hook", "https://a.b.corp.io/x",
])
def test_allowed_hosts_are_accepted(url: str) -> None:
    assert callback_url(url, ON) == url


@pytest.mark.parametrize(("url", "reason"), [
    ("https://evil.example.net/", "not allowed"),
    ("http://127.0.0.1:9001/hook", "not allowed"),        # the port is part of the entry
    ("https://hooks.example.com.evil.net/", "not allowed"),
    ("https://corp.io/", "not allowed"),                  # *.corp.io is sub-domains only
    ("ftp://hooks.example.com/", "absolute http"),
    ("/relative/path", "absolute http"),
    ("https://user:pw@hooks.example.com/", "credentials"),
    ("http://[::1", "not a URL"),
])
def test_other_urls_are_refused_naming_why(url: str, reason: str) -> None:
    with pytest.raises(CallbackRefusedError, match=reason):
        callback_url(url, ON)


def test_no_header_no_callback_and_a_server_without_hosts_or_secret_refuses() -> None:
    assert callback_url(None, ON) is None
    with pytest.raises(CallbackRefusedError, match="CALLBACK_HOSTS"):
        callback_url("https://hooks.example.com/", replace(ON, callback_hosts=()))
    with pytest.raises(CallbackRefusedError, match="WEBHOOK_SECRET"):
        callback_url("https://hooks.example.com/", replace(ON, webhook_secret=""))


def test_backoff_doubles_to_five_minutes_and_the_id_is_stable() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4, 10, 20)] == [1, 2, 4, 8, 300, 300]
    assert message_id("abc") == message_id("abc") == "msg_abc"
