"""README's "Use it in your own project", done literally in a temporary directory.

A minimal project (settings, asgi.py, celery_app.py: the README's snippets) is written to disk, then
served by a real uvicorn and a real `celery -A celery_app worker` on the session's broker and
Redis; a request with the header must come back through the WebSocket and the results endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.sync.client import connect

from tools.services import Service, free_port, wait_for_port

pytestmark = pytest.mark.integration

SECRET = "own-project-secret-key-0123456789abcdef"

SETTINGS = f'''
SECRET_KEY = {SECRET!r}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "channels", "async_request"]
DATABASES = {{}}
USE_TZ = True
import os
REDIS = os.environ["TEST_REDIS_URL"]
CHANNEL_LAYERS = {{"default": {{"BACKEND": "channels_redis.core.RedisChannelLayer",
                              "CONFIG": {{"hosts": [{{"address": REDIS,
                                                     "socket_timeout": 30}}],
                                         "capacity": 1000}}}}}}
ASYNC_REQUEST_ASGI_APP = "myproject.asgi:application"
ASYNC_REQUEST_REDIS_URL = REDIS
KAFKA_BOOTSTRAP_SERVERS = os.environ["TEST_KAFKA"]
KAFKA_TOPIC_ASYNC_BG = os.environ["TEST_TOPIC"]
KAFKA_GROUP_ID = os.environ["TEST_TOPIC"]
KAFKA_TASKS = []
'''

ASGI = '''
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
from django.core.asgi import get_asgi_application
django_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter
from fastapi import FastAPI, Request
from async_request.middleware import AsyncRequestMiddleware
from async_request.results.fastapi import router as results_router
from async_request.routing import websocket_urlpatterns

api = FastAPI()
api.include_router(results_router, prefix="/api/v1")


@api.post("/api/v1/double/")
async def double(request: Request) -> dict:
    data = await request.json()
    return {"double": data["n"] * 2, "user": request.headers.get("authorization", "")[:6]}


application = ProtocolTypeRouter({
    "http": AsyncRequestMiddleware(api),
    "websocket": URLRouter(websocket_urlpatterns),
})
'''

CELERY_APP = '''
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
import django
django.setup()
from async_request.celery_config import create_celery_app
app = create_celery_app("myproject")
'''


def _spawn(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> Service:
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    return Service(args[2], "", proc)


@pytest.fixture(scope="module")
def own_project(kafka: Service, redis_url: str, tmp_path_factory: pytest.TempPathFactory,
                integration_logs: Path) -> Iterator[str]:
    root = tmp_path_factory.mktemp("own_project")
    package = root / "myproject"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(textwrap.dedent(SETTINGS))
    (package / "asgi.py").write_text(textwrap.dedent(ASGI))
    (root / "celery_app.py").write_text(textwrap.dedent(CELERY_APP))
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BS_", "DJANGO_"))}
    env.update(PYTHONPATH=f"{root}{os.pathsep}{repo}", TEST_REDIS_URL=redis_url,
               TEST_KAFKA=kafka.url, TEST_TOPIC=f"own_{os.getpid()}",
               DJANGO_SETTINGS_MODULE="myproject.settings")
    port = free_port()
    web = _spawn([sys.executable, "-m", "uvicorn", "myproject.asgi:application", "--port",
                  str(port)], root, env, integration_logs / "own_web.log")
    worker = _spawn([sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", "solo",
                     "-l", "INFO"], root, env, integration_logs / "own_worker.log")
    try:
        wait_for_port("127.0.0.1", port, 30, web.process, "own project web app")
        yield f"127.0.0.1:{port}"
    finally:
        web.stop()
        worker.stop()


def test_minimal_project_from_the_readme(own_project: str) -> None:
    token = jwt.encode({"sub": "99", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    headers = {"authorization": f"Bearer {token}"}
    with connect(f"ws://{own_project}/ws/?token={token}", open_timeout=10) as ws, \
            httpx.Client(base_url=f"http://{own_project}", timeout=30) as http:
        assert json.loads(ws.recv(timeout=10)) == {"type": "subscribed"}
        sync = http.post("/api/v1/double/", json={"n": 21}, headers=headers)
        assert sync.status_code == 200
        accepted = http.post("/api/v1/double/", json={"n": 21},
                             headers={**headers, "x-async-request": "true"})
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["meta"]["async_request_id"]
        frame = json.loads(ws.recv(timeout=90))
        assert json.loads(frame["data"]) == {"task_id": task_id, "status": "completed",
                                             "action": "async_request"}
        result = http.get(f"/api/v1/async_background_response/{task_id}/", headers=headers)
    assert result.status_code == 200
    assert result.json()["response"] == sync.json() == {"double": 42, "user": "Bearer"}
