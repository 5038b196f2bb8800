"""wait_until_ready: a server that dies while loading is reported at once, one that never answers
after the timeout, one that answers 200 on /readyz ends the wait."""

import http.server
import threading

import pytest

from fmloop.core.machine import free_port
from fmloop.serve.ready import ServerExited, wait_until_ready


def test_a_server_that_exited_is_reported_at_once():
    with pytest.raises(ServerExited, match="exited with code 3"):
        wait_until_ready(f"http://127.0.0.1:{free_port()}", timeout_s=60, exit_code=lambda: 3)


def test_a_server_that_never_answers_times_out():
    with pytest.raises(TimeoutError, match="not ready after"):
        wait_until_ready(f"http://127.0.0.1:{free_port()}", timeout_s=0.5, poll_s=0.1)


def test_a_ready_server_ends_the_wait():
    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wait_until_ready(f"http://127.0.0.1:{server.server_port}", timeout_s=30)
    finally:
        server.shutdown()
