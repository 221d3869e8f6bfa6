"""The /demo/ page and the one copy of the JS client it serves (demo/page.py)."""

from __future__ import annotations

from typing import Any

from demo.page import CLIENT_JS


def test_demo_page_is_html_importing_the_client(client: Any) -> None:
    answer = client.get("/demo/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert 'from "/demo/async-request.js"' in answer.text
    assert 'id="login"' in answer.text


def test_client_script_is_clients_js(client: Any) -> None:
    answer = client.get("/demo/async-request.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.content == CLIENT_JS.read_bytes()
    assert "export class AsyncRequestClient" in answer.text


def test_the_page_is_read_only(client: Any) -> None:
    # CSRF refuses a cookie-less POST first (403); require_GET would say 405.
    assert client.post("/demo/").status_code in (403, 405)
