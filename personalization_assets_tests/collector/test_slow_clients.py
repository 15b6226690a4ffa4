"""Issue 18, finding 4: slow and idle connections are closed, and connections are capped per worker."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from personalization_assets.collector import CollectorSettings

from .conftest import WRITE_KEY, start_collector


@pytest.fixture
def strict(tmp_path):
    settings = CollectorSettings(bus_url=f"sqlite:///{tmp_path}/events.db", write_keys=frozenset({WRITE_KEY}),
                                 header_timeout_s=1.0, body_timeout_s=1.0, keep_alive_timeout_s=1,
                                 max_connections=20)
    server, thread, url, admin_url = start_collector(settings)
    yield url, int(url.rsplit(":", 1)[1])
    server.should_exit = True
    thread.join(10)


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes | None = None) -> float | None:
    """Seconds until the server closed `sock` (None if still open after `seconds`); sends `trickle`
    every 0.2 s meanwhile, as a slowloris client does."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < seconds:
        try:
            if trickle:
                sock.sendall(trickle)
            data = sock.recv(4096)
            if data == b"" or b"408" in data:
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
    return None


def test_a_slowloris_client_trickling_headers_is_cut_off(strict):
    _, port = strict
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n")
        took = _closed_within(s, 5, trickle=b"X-Slow: 1\r\n")
    assert took is not None and took < 2.5, took


def test_an_idle_connection_that_sends_nothing_is_closed(strict):
    _, port = strict
    with socket.create_connection(("127.0.0.1", port)) as s:
        took = _closed_within(s, 5)
    assert took is not None and took < 2.5, took


def test_a_body_that_never_arrives_gets_408(strict):
    _, port = strict
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + WRITE_KEY.encode()
                  + b"\r\nContent-Length: 1000\r\n\r\n{\"batch\": [")
        s.settimeout(4)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408") and b"request_timeout" in reply


def test_connections_beyond_the_cap_are_refused_and_service_continues(strict):
    url, port = strict
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
    try:
        time.sleep(0.3)
        closed = 0
        for s in held:
            s.settimeout(0.05)
            try:
                closed += s.recv(1) == b""
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 35, closed  # at most 20 held open (plus the requests' own)
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    r = requests.post(url + "/v1/track", json={"userId": "u", "event": "E", "messageId": "after"},
                      headers={"Authorization": f"Bearer {WRITE_KEY}"}, timeout=5)
    assert r.status_code == 200


def test_a_kept_alive_connection_trickling_bytes_after_a_request_is_cut_off(strict):
    _, port = strict
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + WRITE_KEY.encode()
                  + b"\r\nContent-Length: 2\r\n\r\n{}")
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        took = _closed_within(s, 6, trickle=b"\r\n")  # every 0.2 s: resets uvicorn's keep-alive timer
    assert took is not None and took < 2.5, took
