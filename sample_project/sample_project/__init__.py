"""Django project package of the async-request sample (settings, URLs, ASGI entry point)."""
