"""`/demo/`: a plain HTML page driving the sample through `clients/js/async-request.js`."""

from __future__ import annotations

from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

#: The one copy of the client, at the repository root (the sample runs from a checkout).
CLIENT_JS = Path(__file__).resolve().parents[2] / "clients" / "js" / "async-request.js"


@require_GET
def demo_page(request: HttpRequest) -> HttpResponse:
    """The demo page: log in, start reports and slow calls, watch and cancel them."""
    return render(request, "demo/index.html")


@require_GET
def client_script(request: HttpRequest) -> HttpResponse:
    """The JavaScript client, served from `clients/js/` so there is a single copy."""
    # Read whole (a few kB): a FileResponse streams a sync iterator, which Django's ASGI
    # handler warns about.
    response = HttpResponse(CLIENT_JS.read_bytes(), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response
