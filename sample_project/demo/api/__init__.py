"""FastAPI routers of the demo, mounted by `fastapi_app` under `/api/v1`."""
