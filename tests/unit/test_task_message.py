"""When the replay task's message is built by us (task_message.py) and when Celery builds it."""

from __future__ import annotations

from celery import Celery

from async_request.celery_config import TASK_NAME, create_celery_app
from async_request.settings import load_settings
from async_request.task_message import ReplayMessages


def app(**conf: object) -> Celery:
    settings = load_settings({"BS_ENV_FILE": "/nonexistent", "BS_SECRET_KEY": "s" * 32,
                              "BS_ASYNC_REQUEST_LANES": '["GET ^/bulk/$ bulk"]'},
                              django_settings=None)
    celery = create_celery_app(settings=settings)
    celery.conf.update(conf)
    return celery


def test_our_settings_fit_and_every_lane_routes_to_its_own_queue() -> None:
    messages = ReplayMessages(app())
    assert messages.fits
    for queue in ("async_request", "async_request.bulk"):
        target = messages.route(queue)
        assert target is not None and target.name == queue


def test_the_registered_replay_task_fits() -> None:
    import async_request.tasks  # noqa: F401 - registers the shared task

    celery = app()
    celery.finalize()
    assert celery._tasks.get(TASK_NAME) is not None and ReplayMessages(celery).fits


def test_other_wire_settings_leave_it_to_send_task() -> None:
    for conf in ({"task_serializer": "pickle"}, {"task_compression": "gzip"},
                 {"task_send_sent_event": True}, {"task_protocol": 1},
                 {"task_default_delivery_mode": "transient"}):
        assert not ReplayMessages(app(**conf)).fits, conf


def test_a_route_that_adds_options_leaves_it_to_send_task() -> None:
    celery = app(task_routes={TASK_NAME: {"queue": "async_request", "priority": 5}})
    assert ReplayMessages(celery).route("async_request") is None


def test_a_task_with_its_own_options_leaves_it_to_send_task() -> None:
    import async_request.tasks  # noqa: F401 - registers the shared task

    celery = app(task_annotations={TASK_NAME: {"time_limit": 30}})
    celery.finalize()  # send_task sees registered tasks only
    assert not ReplayMessages(celery).fits
