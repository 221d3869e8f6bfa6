"""async-request: run any heavy HTTP request of a Django / FastAPI app in the background."""

__version__ = "0.1.0"
