"""README's "Use it in your own project", done literally: its snippets, a built wheel, a new venv.

The package is built as a wheel and installed with README step 1's extras into a fresh
virtualenv (not the checkout on `sys.path`). The project is README's three snippets, taken from
README.md itself, with only what README leaves to the reader filled in: the `...` of your other
apps, a secret key, a route where it says `# ... your routes ...`, and the addresses of this
test's Redis (README's default `redis://127.0.0.1:6379/0`). Then README step 5 runs as written:
`async-request broker` (on a free port, named to the project with `BS_KAFKA_BOOTSTRAP_SERVERS`),
`uvicorn myproject.asgi:application` and `async-request worker --settings myproject.settings`,
from the project's directory, without PYTHONPATH. A deferred request must come back through the
WebSocket and the results endpoint. The time from an empty directory to that result is written
to `own_project_timing.txt` in the session's log directory.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.sync.client import connect

from tests.integration.stack import own_redis_db
from tools.services import Service, free_port, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
README_REDIS = "redis://127.0.0.1:6379/0"
#: A Redis database of its own: its users' owner names repeat those of the session's stack.
REDIS_DB = 4
ROUTE = '''
from fastapi import Request


@api.post("/api/v1/double/")
async def double(request: Request) -> dict:
    data = await request.json()
    return {"double": data["n"] * 2, "user": request.headers.get("authorization", "")[:6]}
'''


def readme_snippets() -> list[str]:
    """The Python blocks of README's "Use it in your own project": settings, asgi, celery_app."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Use it in your own project", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3, f"README's own-project section has {len(blocks)} Python blocks"
    return blocks


def run(args: list[str], **kwargs: object) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


def _spawn(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> Service:
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    return Service(Path(args[0]).name, "", proc, log=log)


@pytest.fixture(scope="module")
def own_project(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
                integration_logs: Path) -> Iterator[tuple[str, str, float]]:
    started = time.monotonic()
    root = tmp_path_factory.mktemp("own_project")
    wheels = root / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels),
         str(REPO)])
    [wheel] = wheels.glob("async_request_kafka-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         f"{wheel}[fastapi,server,embedded]"])

    secret = secrets.token_urlsafe(32)
    settings, asgi, celery_app = readme_snippets()
    settings = (settings.replace("[..., ", "[")
                .replace('"<32+ random characters>"', repr(secret))
                .replace(README_REDIS, own_redis_db(redis_url, REDIS_DB)))
    assert "# ... your routes ..." in asgi
    asgi = asgi.replace("# ... your routes ...", ROUTE)
    project = root / "project"
    (project / "myproject").mkdir(parents=True)
    (project / "myproject" / "__init__.py").write_text("")
    (project / "myproject" / "settings.py").write_text(settings)
    (project / "myproject" / "asgi.py").write_text(asgi)
    (project / "celery_app.py").write_text(celery_app)

    broker_port, web_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BS_", "DJANGO_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(BS_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{broker_port}",
               BS_KAFKA_TOPIC_ASYNC_BG=f"own_{os.getpid()}",
               BS_KAFKA_GROUP_ID=f"own_{os.getpid()}", PATH=f"{venv / 'bin'}:{env['PATH']}")
    bin_dir = venv / "bin"
    services = [
        _spawn([str(bin_dir / "async-request"), "broker", "--port", str(broker_port)], project,
               env, integration_logs / "own_broker.log"),
    ]
    try:
        wait_for_port("127.0.0.1", broker_port, 30, services[0].process, "async-request broker")
        services.append(_spawn([str(bin_dir / "uvicorn"), "myproject.asgi:application",
                                "--port", str(web_port)], project, env,
                               integration_logs / "own_web.log"))
        services.append(_spawn([str(bin_dir / "async-request"), "worker", "--settings",
                                "myproject.settings"], project, env,
                               integration_logs / "own_worker.log"))
        wait_for_port("127.0.0.1", web_port, 60, services[1].process, "own project web app")
        yield f"127.0.0.1:{web_port}", secret, started
    finally:
        for service in reversed(services):
            service.stop()


def test_minimal_project_from_the_readme(own_project: tuple[str, str, float],
                                         integration_logs: Path) -> None:
    address, secret, started = own_project
    token = jwt.encode({"sub": "99", "exp": int(time.time()) + 600}, secret, algorithm="HS256")
    headers = {"authorization": f"Bearer {token}"}
    with connect(f"ws://{address}/ws/", open_timeout=10) as ws, \
            httpx.Client(base_url=f"http://{address}", timeout=30) as http:
        ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "subscribed"}
        sync = http.post("/api/v1/double/", json={"n": 21}, headers=headers)
        assert sync.status_code == 200
        accepted = http.post("/api/v1/double/", json={"n": 21},
                             headers={**headers, "x-async-request": "true"})
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["meta"]["async_request_id"]
        states = []
        while not states or states[-1] in ("pending", "running"):
            data = json.loads(json.loads(ws.recv(timeout=120))["data"])
            assert data["task_id"] == task_id and data["action"] == "async_request"
            states.append(data["status"])
        assert states[-1] == "completed" and set(states[:-1]) <= {"pending", "running"}
        result = http.get(f"/api/v1/async_background_response/{task_id}/", headers=headers)
    elapsed = time.monotonic() - started
    (integration_logs / "own_project_timing.txt").write_text(
        f"empty directory -> wheel, venv, README's project, first async result: {elapsed:.1f} s\n")
    assert result.status_code == 200
    assert result.json()["response"] == sync.json() == {"double": 42, "user": "Bearer"}
    worker_log = (integration_logs / "own_worker.log").read_text()
    assert "ready." in worker_log and task_id in worker_log  # INFO by default: ready, each task
