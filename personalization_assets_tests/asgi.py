"""Our ASGI apps served for real in tests: uvicorn on a free loopback port, in a thread; and free
ports for the servers a test runs as processes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


@contextmanager
def serving(app, what: str = "the server", timeout: float = 10.0, **config) -> Iterator[int]:
    """Serve `app` on 127.0.0.1 until the block ends and yield its port. `config`: more
    `uvicorn.Config` settings (the log level is `warning` unless given)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **{"log_level": "warning", **config}))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, f"{what} did not start within {timeout:g} s"
            time.sleep(0.02)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def free_port() -> int:
    """A loopback port free now (a process started next can bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
