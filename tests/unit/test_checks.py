"""Start-up checks: a weak or well-known secret is reported, naming the setting."""

from __future__ import annotations

from typing import Any

import pytest

from async_request.checks import secret_warnings, weak_secret
from async_request.settings import Settings

STRONG = "Zq3v9Lr0u1Yw7PnT2sX8kD4bG6hJ5mQcE0aVfR"


@pytest.mark.parametrize("secret", [
    "", "short", "django-insecure-" + "x" * 40,
    "dev-only-insecure-key-change-me-0123456789abcdef0123456789", "changeme" * 5,
])
def test_weak_secrets_say_why(secret: str) -> None:
    assert weak_secret(secret)


def test_a_random_secret_passes() -> None:
    assert weak_secret(STRONG) is None
    assert secret_warnings(Settings(secret_key=STRONG, jwt_secret=STRONG)) == []


def test_messages_name_the_setting() -> None:
    [sealing] = secret_warnings(Settings(secret_key="short", jwt_secret="short"))
    assert sealing.id == "async_request.W001" and "ASYNC_REQUEST_SECRET_KEY" in sealing.msg
    found = secret_warnings(Settings(secret_key=STRONG, jwt_secret="django-insecure-abc"))
    assert [m.id for m in found] == ["async_request.W002"]
    assert "ASYNC_REQUEST_JWT_SECRET" in found[0].msg


def test_no_or_a_broken_channel_layer_is_an_error() -> None:
    from channels.layers import channel_layers
    from django.test import override_settings

    from async_request.checks import channel_layer_errors

    for layers in ({}, {"default": {"BACKEND": "no.such.Layer"}}):
        with override_settings(CHANNEL_LAYERS=layers):
            channel_layers.backends.clear()
            [error] = channel_layer_errors()
            assert error.id == "async_request.E001" and "CHANNEL_LAYERS" in error.msg
    channel_layers.backends.clear()


@pytest.mark.parametrize(("path", "needle"), [
    ("", "is empty"), ("tests.asgi_apps:no_such_app", "no_such_app"),
    ("no_such_module:app", "no_such_module"),
])
def test_a_replay_target_that_does_not_import_is_an_error(path: str, needle: str) -> None:
    from async_request.checks import replay_target_errors

    [error] = replay_target_errors(Settings(asgi_app=path))
    assert error.id == "async_request.E002" and needle in error.msg
    assert "ASYNC_REQUEST_ASGI_APP" in error.msg
    assert replay_target_errors(Settings(asgi_app="tests.asgi_apps:echo_app")) == []


def test_unreachable_redis_and_broker_are_named() -> None:
    from async_request.checks import reachability_warnings

    found = reachability_warnings(Settings(redis_url="redis://127.0.0.1:1/0",
                                           kafka_bootstrap_servers="127.0.0.1:2",
                                           broker_url="kafka://127.0.0.1:2"))
    assert [m.id for m in found] == ["async_request.W003", "async_request.W004"]
    assert "ASYNC_REQUEST_REDIS_URL" in found[0].msg and "127.0.0.1:1" in found[0].msg
    assert "KAFKA_BOOTSTRAP_SERVERS" in found[1].msg


def test_a_redis_url_without_a_scheme_fails_at_load_naming_the_setting() -> None:
    from async_request.exceptions import ConfigurationError
    from async_request.settings import load_settings

    with pytest.raises(ConfigurationError, match="ASYNC_REQUEST_REDIS_URL.*127.0.0.1:6379/7"):
        load_settings({"BS_ENV_FILE": "/nonexistent",
                       "BS_ASYNC_REQUEST_REDIS_URL": "127.0.0.1:6379/7"}, django_settings=None)


def test_kafka_brokers_listed_with_semicolons_fail_at_load_with_the_url_to_use() -> None:
    from async_request.exceptions import ConfigurationError
    from async_request.settings import load_settings

    with pytest.raises(ConfigurationError, match=r"ASYNC_REQUEST_BROKER_URL.*kafka://h1:9092,h2:9092"):
        load_settings({"BS_ENV_FILE": "/nonexistent",
                       "BS_ASYNC_REQUEST_BROKER_URL": "kafka://h1:9092;kafka://h2:9092"},
                      django_settings=None)
    fine = load_settings({"BS_ENV_FILE": "/nonexistent",
                          "BS_ASYNC_REQUEST_BROKER_URL": "kafka://h1:9092,h2:9092"},
                         django_settings=None)
    assert fine.broker_url == "kafka://h1:9092,h2:9092"


def test_a_project_without_the_app_installed_is_told() -> None:
    from django.apps import apps

    from async_request.checks import installed_error

    assert installed_error() is None  # the sample installs it
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(apps, "is_installed", lambda name: False)
        assert "INSTALLED_APPS" in str(installed_error())


def test_the_sample_refuses_its_public_key_when_debug_is_off(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    env.update(DJANGO_DEBUG="0", DJANGO_SETTINGS_MODULE="sample_project.settings",
               PYTHONPATH=f"{root}{os.pathsep}{root / 'sample_project'}")
    code = "import django; django.setup()"
    refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=False, cwd=tmp_path)
    assert refused.returncode != 0 and "DJANGO_SECRET_KEY" in refused.stderr
    env["DJANGO_SECRET_KEY"] = STRONG
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          check=False, cwd=tmp_path).returncode == 0
