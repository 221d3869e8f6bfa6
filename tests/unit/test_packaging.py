"""The distribution: its name on PyPI (not the unrelated `async-request`) and what the docs install.

PyPI's `async-request` is a crawler that also imports as `async_request`; following a README that
says `pip install "async-request[...]"` installs it instead of us (issue 15, item 1).
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import async_request

ROOT = Path(__file__).resolve().parents[2]
NAME = "async-request-kafka"
TAKEN = "async-request"  # PyPI: "A lightweight network request framework", another project
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _project() -> dict[str, object]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project: dict[str, object] = data["project"]
    return project


def test_distribution_name_is_not_the_taken_one() -> None:
    assert _project()["name"] == NAME


def test_dev_extra_installs_this_distribution() -> None:
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert f"{NAME}[fastapi,server,embedded,postgres]" in extras["dev"]
    assert not [req for req in extras["dev"] if re.match(rf"{TAKEN}\b(?!-)", req)]


def test_installed_under_the_new_name() -> None:
    assert importlib.metadata.version(NAME) == async_request.__version__


def test_docs_install_the_new_name_with_the_extras_the_snippets_need() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f'pip install "{NAME}[fastapi,server,embedded]"' in readme
    assert 'pip install -e ".[fastapi,server,embedded]"' in readme
    for doc in DOCS:
        wrong = re.findall(rf"pip install[^\n`]*\b{TAKEN}(?![-\w])", doc.read_text())
        assert not wrong, f"{doc.name} installs PyPI's unrelated {TAKEN}: {wrong}"


def test_console_script_is_the_cli() -> None:
    [script] = importlib.metadata.entry_points(group="console_scripts", name="async-request")
    assert script.value == "async_request.cli:main"
    assert script.dist is not None and script.dist.name == NAME


def test_readme_says_where_kafka_comes_from_and_how_to_run_workers_without_manage_py() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in ("async-request broker", "async-request worker --settings myproject.settings",
                    "async-request workers --settings myproject.settings --consumers-count=4",
                    "celery -A celery_app worker -E -l info"):
        assert command in readme
    assert "celery -A celery_app worker -E`" not in readme  # WARNING level: no `ready.` line
