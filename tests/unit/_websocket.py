"""A WebSocket test client on asgiref's ApplicationCommunicator.

channels' own `WebsocketCommunicator` has the same shape, but importing `channels.testing`
imports daphne (its live-server test case), which this project does not install.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from asgiref.testing import ApplicationCommunicator


class WebSocket(ApplicationCommunicator):  # type: ignore[misc]
    """Drive one ASGI WebSocket connection: connect, send and receive frames."""

    def __init__(self, application: Any, path: str) -> None:
        parts = urlsplit(path)
        super().__init__(application, {
            "type": "websocket", "path": parts.path, "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(), "headers": [], "subprotocols": [],
        })

    async def connect(self, timeout: float = 1) -> bool:
        await self.send_input({"type": "websocket.connect"})
        return (await self.receive_output(timeout))["type"] == "websocket.accept"

    async def send_to(self, text_data: str | None = None, bytes_data: bytes | None = None
                      ) -> None:
        message: dict[str, Any] = {"type": "websocket.receive"}
        if text_data is not None:
            message["text"] = text_data
        if bytes_data is not None:
            message["bytes"] = bytes_data
        await self.send_input(message)

    async def send_json_to(self, data: Any) -> None:
        await self.send_to(text_data=json.dumps(data))

    async def receive_json_from(self, timeout: float = 1) -> Any:
        message = await self.receive_output(timeout)
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)
