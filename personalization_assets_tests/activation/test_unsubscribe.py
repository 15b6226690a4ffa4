"""The one-click endpoint under hostile and RFC 8058 clients: opaque tokens, form bodies, size cap."""

from __future__ import annotations

import base64
import socket
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from personalization_assets.activation.unsubscribe import (
    MAX_BODY_BYTES, create_unsubscribe_app, make_token, read_token, unsubscribe_url,
)
from personalization_assets.activation.unsubscribe_token import make_legacy_token

from ..asgi import serving

SECRET = "unsub-secret"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
ADDRESS = "anna.lee@example.com"


def app(recorded: list, **kwargs):
    return create_unsubscribe_app(SECRET, recorded.append, clock=lambda: NOW, **kwargs)


def multipart(fields: dict[str, str], boundary: str = "----gmail0123") -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body as Gmail sends it for one-click (no file parts)."""
    parts = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                    for k, v in fields.items())
    return f"{parts}--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# -- tokens ------------------------------------------------------------------------------------

def test_link_carries_no_trace_of_the_address():
    url = unsubscribe_url("https://shop.example/unsubscribe", SECRET, ADDRESS)
    token = parse_qs(urlsplit(url).query)["t"][0]
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for needle in (ADDRESS, "anna", "example.com"):
        assert needle not in url and needle.encode() not in decoded
        assert base64.urlsafe_b64encode(needle.encode()).decode().rstrip("=")[:8] not in url
    assert read_token(SECRET, token) == ADDRESS
    assert make_token(SECRET, ADDRESS) != make_token(SECRET, ADDRESS)  # unlinkable between messages
    page = TestClient(app([])).get("/unsubscribe", params={"t": token})  # also fetched by link scanners
    assert page.status_code == 200 and ADDRESS not in page.text and "a***@example.com" in page.text
    # Padding: short and long local parts of one domain give tokens of one length.
    assert len(make_token(SECRET, "a@example.com")) == len(make_token(SECRET, "abcdefghij@example.com"))


@settings(max_examples=200, deadline=None)
@given(email=st.emails(), position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=63))
def test_tampered_or_foreign_tokens_are_refused(email, position, flip):
    token = make_token(SECRET, email)
    assert read_token(SECRET, token) == email.strip().lower()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = position % len(token)
    changed = token[:i] + alphabet[(alphabet.index(token[i]) + flip) % 64] + token[i + 1:]
    if base64.urlsafe_b64decode(changed + "=" * (-len(changed) % 4)) != base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)):
        assert read_token(SECRET, changed) is None
    assert read_token("another-secret", token) is None
    assert read_token(SECRET, token[:-4]) is None


def test_old_readable_tokens_only_during_the_migration_window():
    old = make_legacy_token(SECRET, ADDRESS)
    assert read_token(SECRET, old) == ADDRESS
    assert read_token(SECRET, old, accept_legacy=False) is None
    assert read_token(SECRET, old[:-3] + "AAA") is None
    recorded: list = []
    closed = TestClient(app(recorded, accept_legacy_tokens=False))
    assert closed.post("/unsubscribe", params={"t": old}, content="List-Unsubscribe=One-Click").status_code == 400
    assert TestClient(app(recorded)).post("/unsubscribe", params={"t": old},
                                          content="List-Unsubscribe=One-Click").status_code == 200
    assert [e.email for e in recorded] == [ADDRESS]


def test_the_deployed_endpoint_ends_the_window_when_told(monkeypatch, tmp_path):
    from personalization_assets.activation.unsubscribe import app_from_env

    monkeypatch.setenv("UNSUBSCRIBE_SECRET", SECRET)
    monkeypatch.setenv("EMAIL_EVENTS_BUS_URL", f"sqlite:///{tmp_path / 'email_events.db'}")
    old = make_legacy_token(SECRET, ADDRESS)
    for setting, status in (("1", 200), ("0", 400)):
        monkeypatch.setenv("UNSUBSCRIBE_ACCEPT_LEGACY_TOKENS", setting)
        with TestClient(app_from_env()) as client:  # its shutdown closes the e-mail events bus
            answer = client.post("/unsubscribe", params={"t": old}, content="List-Unsubscribe=One-Click")
        assert answer.status_code == status


# -- form bodies (RFC 8058 section 3.1) --------------------------------------------------------

def test_multipart_one_click_post_is_accepted():
    recorded: list = []
    client = TestClient(app(recorded))
    token = make_token(SECRET, ADDRESS)
    body, headers = multipart({"List-Unsubscribe": "One-Click"})
    answer = client.post("/unsubscribe", params={"t": token}, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    body, headers = multipart({"utm": "x", "List-Unsubscribe": "One-Click"}, boundary="b")
    assert client.post("/unsubscribe", params={"t": token}, content=body, headers=headers).status_code == 200
    assert [e.email for e in recorded] == [ADDRESS, ADDRESS]
    assert len({e.provider_event_id for e in recorded}) == 1  # one token: stored once downstream


def test_urlencoded_with_other_fields_is_accepted():
    recorded: list = []
    client = TestClient(app(recorded))
    answer = client.post("/unsubscribe", params={"t": make_token(SECRET, ADDRESS)},
                         data={"source": "gmail", "List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200 and len(recorded) == 1


@pytest.mark.parametrize("body, content_type", [
    (multipart({"List-Unsubscribe": "Nope"})[0], "multipart/form-data; boundary=----gmail0123"),
    (multipart({"Other": "One-Click"})[0], "multipart/form-data; boundary=----gmail0123"),
    (b"--x\r\nContent-Disposition: form-data\r\n\r\nbroken", "multipart/form-data; boundary=x"),
    (b"anything", "multipart/form-data"),  # no boundary
    (b"List-Unsubscribe=Nope", "application/x-www-form-urlencoded"),
])
def test_form_without_the_one_click_field_is_a_clear_400(body, content_type):
    recorded: list = []
    answer = TestClient(app(recorded)).post("/unsubscribe", params={"t": make_token(SECRET, ADDRESS)},
                                            content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 400 and not recorded
    assert "List-Unsubscribe" in answer.text or "form" in answer.text


# -- the body cap, over a real socket ----------------------------------------------------------

@pytest.fixture
def endpoint():
    recorded: list = []
    with serving(app(recorded), "the endpoint") as port:
        yield port, recorded


def _post_head(token: str, extra: str) -> bytes:
    return (f"POST /unsubscribe?t={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n{extra}\r\n").encode()


def _send_until_answer(port: int, head: bytes, chunk: bytes, budget: int) -> tuple[bytes, int, float]:
    """Send `head`, then `chunk`s until the server answers (or `budget` bytes went out)."""
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head)
        conn.setblocking(False)
        answer = b""
        while sent < budget and not answer:
            try:
                answer = conn.recv(65536)
            except BlockingIOError:
                pass
            try:
                sent += conn.send(chunk)
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                break
        conn.setblocking(True)
        conn.settimeout(5)
        while not answer:
            answer = conn.recv(65536)
    return answer, sent, time.monotonic() - started


def test_announced_200mb_body_is_refused_before_it_is_read(endpoint):
    port, recorded = endpoint
    head = _post_head(make_token(SECRET, ADDRESS), f"Content-Length: {200 * 1024 * 1024}\r\n")
    answer, sent, seconds = _send_until_answer(port, head, b"x" * 65536, 200 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 20 * 1024 * 1024 and seconds < 5 and not recorded  # refused early, nothing stored


def test_streamed_chunked_body_is_cut_at_the_cap(endpoint):
    port, recorded = endpoint
    head = _post_head(make_token(SECRET, ADDRESS), "Transfer-Encoding: chunked\r\n")
    chunk = b"%x\r\n%s\r\n" % (4096, b"y" * 4096)
    answer, sent, seconds = _send_until_answer(port, head, chunk, 200 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 20 * 1024 * 1024 and seconds < 5 and not recorded
    assert MAX_BODY_BYTES < 64 * 1024


def test_a_normal_one_click_post_still_works_over_the_socket(endpoint):
    port, recorded = endpoint
    body = b"List-Unsubscribe=One-Click"
    head = _post_head(make_token(SECRET, ADDRESS), f"Content-Length: {len(body)}\r\nConnection: close\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(head + body)
        answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200") and [e.email for e in recorded] == [ADDRESS]


CONTENT_TYPES = st.sampled_from([None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                 "multipart/form-data; boundary=b", "multipart/form-data; boundary=",
                                 "application/json", "multipart/form-data; boundary=\"q\"; charset=latin-1"])


@settings(max_examples=300, deadline=None)
@given(token=st.one_of(st.text(max_size=120), st.just(make_token(SECRET, ADDRESS))),
       body=st.one_of(st.binary(max_size=600), st.builds(lambda f: multipart(f, boundary="b")[0],
                                                        st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4))),
       content_type=CONTENT_TYPES)
def test_no_request_makes_the_endpoint_fail(token, body, content_type):
    recorded: list = []
    headers = {"Content-Type": content_type} if content_type else {}
    answer = TestClient(app(recorded), raise_server_exceptions=False).post(
        "/unsubscribe", params={"t": token}, content=body, headers=headers)
    assert answer.status_code in (200, 400, 413), answer.text
    assert len(recorded) == (answer.status_code == 200)


# -- slow bodies and a store that fails, over a real socket --------------------------------------

def test_a_body_that_never_arrives_gets_408_and_the_connection_closed():
    """Without a deadline a client that announces 26 bytes and sends none holds its connection
    (and the request) for ever."""
    recorded: list = []
    with serving(app(recorded, body_timeout_s=1.0), "the endpoint", log_level="critical") as port:
        head = _post_head(make_token(SECRET, ADDRESS), "Content-Length: 26\r\n")
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=8) as conn:
            conn.sendall(head + b"List-Unsub")  # part of the body, then nothing
            answer = conn.recv(65536)
            rest = conn.recv(65536)  # the server closes the connection after answering
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert rest == b"" and time.monotonic() - started < 5 and not recorded


def test_a_store_that_fails_gets_a_stable_503_and_the_detail_only_in_the_log(caplog):
    def store_down(event):
        raise ConnectionError("Error 111 connecting to 10.20.30.40:6379. Connection refused.")

    with serving(create_unsubscribe_app(SECRET, store_down, clock=lambda: NOW), "the endpoint",
                 log_level="critical") as port:
        answer = requests.post(f"http://127.0.0.1:{port}/unsubscribe", params={"t": make_token(SECRET, ADDRESS)},
                               data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert answer.status_code == 503 and answer.headers.get("Retry-After"), answer.text
    assert "10.20.30.40" not in answer.text and "ConnectionError" not in answer.text
    assert "10.20.30.40" in caplog.text
