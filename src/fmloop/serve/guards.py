"""What stands between a request and the model or the store: the body limit on the bytes actually
read and the text check every input passes before the tokenizer or the database sees it. Each failure is one request's 4xx, never a 500 and never another request's."""

from __future__ import annotations

import json


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        self.status, self.message, self.headers = status, message, headers or {}


def check_text(value: str, where: str) -> str:
    """`value` if a tokenizer and every store can take it, else 422 naming `where`. JSON may carry
    a lone surrogate ("\\ud800"), which no UTF-8 encoder accepts, and NUL, which PostgreSQL's text
    columns refuse (so one such input would fail the stored batch it was written with)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ApiError(
            422, f"{where}: not valid Unicode (a lone surrogate at character {err.start}); send UTF-8 text"
        ) from None
    if "\x00" in value:
        raise ApiError(422, f"{where}: contains a NUL character (at {value.index(chr(0))}); remove it")
    return value


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413, counted on what is read, so a
    chunked body (no Content-Length) or a Content-Length that lies cannot make the server hold more
    than `limit` bytes of it. The body is read here, at most `limit` bytes, and handed on whole."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(send, f"request body of {int(declared)} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                return await self.app(scope, _replay([message]), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._too_large(send, f"request body of more than {self.limit} bytes")
            if not message.get("more_body", False):
                break
        return await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks)}], receive), send)

    async def _too_large(self, send, what: str) -> None:
        body = json.dumps({"error": f"{what} is over the limit of {self.limit}"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[dict], then=None):
    """An ASGI receive that hands out `messages`, then defers to `then` (disconnects)."""

    async def receive():
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
