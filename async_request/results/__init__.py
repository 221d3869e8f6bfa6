"""The results endpoint: a status core (`status.py`) and thin FastAPI / Django adapters."""
