"""Waiting for a server to answer /readyz: one loop for the pipeline's users stage, the serving
benchmark and the tests that start `fmloop serve` in a process or a thread."""

import time
from collections.abc import Callable

import httpx

from fmloop.core.errors import FmloopError


class ServerExited(FmloopError):
    """The server's process ended before it became ready."""


def wait_until_ready(
    url: str, timeout_s: float = 300, exit_code: Callable[[], int | None] = lambda: None, poll_s: float = 0.3
) -> None:
    """Return once GET url/readyz answers 200 (the model is loaded and warmed up).

    `exit_code` is polled too (e.g. `Popen.poll`): a server that dies while loading raises
    ServerExited at once instead of after the whole timeout; TimeoutError after timeout_s.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = exit_code()
        if code is not None:
            raise ServerExited(f"the server at {url} exited with code {code} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    raise TimeoutError(f"the server at {url} was not ready after {timeout_s:.0f} s")
