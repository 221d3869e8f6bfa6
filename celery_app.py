"""The Celery app of the sample project and of `make run`: `celery -A celery_app worker`.

A project of your own needs the same three lines with its settings module (see README).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "sample_project"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_project.settings")

import django  # noqa: E402

django.setup()  # the worker replays into Django views and wires our signals in AppConfig.ready()

from async_request.celery_config import create_celery_app  # noqa: E402

app = create_celery_app("celery_app")
