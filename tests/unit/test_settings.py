"""Settings: sources, casting, and errors that name the setting."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from async_request.exceptions import ConfigurationError
from async_request.settings import Settings, load_settings, settings_table


class DjangoStub:
    SECRET_KEY = "django-secret"
    KAFKA_TOPIC_ASYNC_BG = "from-django"


def test_defaults_without_any_source(tmp_path: Path) -> None:
    settings = load_settings({"BS_ENV_FILE": str(tmp_path / "none")}, django_settings=None)
    assert settings.kafka_topic_async_bg == "async_request"
    assert settings.broker_url == "kafka://127.0.0.1:9092"
    assert settings.result_expires_sec == 86400


def test_environment_with_prefix_and_casts(tmp_path: Path) -> None:
    settings = load_settings({
        "BS_ENV_FILE": str(tmp_path / "none"),
        "BS_KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2",
        "BS_KAFKA_ENABLE_AUTO_COMMIT": "yes",
        "BS_KAFKA_TASKS": '["x.tasks", "y.tasks"]',
        "BS_KAFKA_CONFIG": '{"security.protocol": "SASL_SSL"}',
        "BS_KAFKA_CONSUMER_LIFETIME_SEC": "60",
        "BS_KAFKA_AUTO_OFFSET_RESET": "Latest",
    }, django_settings=None)
    assert settings.broker_url == "kafka://a:1,b:2"
    assert settings.kafka_enable_auto_commit is True
    assert settings.kafka_tasks == ("x.tasks", "y.tasks")
    assert settings.kafka_config == {"security.protocol": "SASL_SSL"}
    assert settings.kafka_consumer_lifetime_sec == 60
    assert settings.kafka_auto_offset_reset == "latest"


def test_comma_separated_list(tmp_path: Path) -> None:
    settings = load_settings({"BS_ENV_FILE": str(tmp_path / "none"),
                              "BS_KAFKA_TASKS": "a.tasks, b.tasks"}, django_settings=None)
    assert settings.kafka_tasks == ("a.tasks", "b.tasks")


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("BS_KAFKA_GROUP_ID=from-dotenv\n")
    settings = load_settings({"BS_ENV_FILE": str(env_file)}, django_settings=None)
    assert settings.kafka_group_id == "from-dotenv"


def test_environment_wins_over_django_settings_which_give_the_secret(tmp_path: Path) -> None:
    settings = load_settings({"BS_ENV_FILE": str(tmp_path / "none"),
                              "BS_KAFKA_TOPIC_ASYNC_BG": "from-env"},
                             django_settings=DjangoStub())
    assert settings.kafka_topic_async_bg == "from-env"
    assert settings.secret_key == "django-secret"
    assert settings.jwt_secret == "django-secret"
    from_django = load_settings({"BS_ENV_FILE": str(tmp_path / "none")},
                                django_settings=DjangoStub())
    assert from_django.kafka_topic_async_bg == "from-django"


def test_dotenv_is_below_the_environment_and_above_django(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("BS_KAFKA_TOPIC_ASYNC_BG=from-dotenv\nBS_KAFKA_GROUP_ID=from-dotenv\n")
    settings = load_settings({"BS_ENV_FILE": str(env_file), "BS_KAFKA_GROUP_ID": "from-env"},
                             django_settings=DjangoStub())
    assert settings.kafka_topic_async_bg == "from-dotenv"
    assert settings.kafka_group_id == "from-env"


def test_every_setting_is_in_the_design_doc_table() -> None:
    # One declaration per setting (Settings' fields); the documented table is generated from it
    # (`python -m async_request.settings`) and must be pasted into docs/design.md unchanged.
    doc = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text()
    assert settings_table() in doc, (
        "docs/design.md's settings table differs from the code: paste the output of "
        "`python -m async_request.settings` into it")


def test_readme_names_every_setting_it_mentions_correctly() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    names = {item.metadata["name"] for item in fields(Settings)}
    mentioned = set(re.findall(r"\b((?:ASYNC_REQUEST|KAFKA)_[A-Z_]+[A-Z])\b", readme))
    assert mentioned <= names, f"README names settings that do not exist: {mentioned - names}"


@pytest.mark.parametrize(("name", "value"), [
    ("KAFKA_CONSUMER_LIFETIME_SEC", "-1"),
    ("KAFKA_ENABLE_AUTO_COMMIT", "maybe"),
    ("KAFKA_AUTO_OFFSET_RESET", "middle"),
    ("KAFKA_TASKS", '{"not": "a list"}'),
    ("KAFKA_CONFIG", "[1, 2]"),
    ("KAFKA_TOPIC_PARTITIONS", "zero"),
    ("KAFKA_LOG_LEVEL", "LOUD"),
    ("ASYNC_REQUEST_ASGI_APP", "not a path!"),
])
def test_wrong_value_names_the_setting(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings({"BS_ENV_FILE": str(tmp_path / "none"), f"BS_{name}": value},
                      django_settings=None)
    assert name in str(info.value)
    assert repr(value) in str(info.value)
