"""Real HTTP peers on 127.0.0.1 that enforce what the platforms document, and a fake clock."""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from personalization_assets.activation.destinations.webhook import (
    IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify,
)


class FakeClock:
    """Monotonic clock whose sleep advances time instead of waiting."""

    def __init__(self):
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Peer:
    """Base: a threaded HTTP server; subclasses implement `handle(method, path, headers, body)`."""

    def __init__(self):
        peer = self
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict]] = []

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with peer.lock:
                    peer.requests.append((self.command, self.path, dict(self.headers)))
                    status, headers, answer = peer.handle(self.command, self.path, self.headers, body)
                if status is None:  # drop the connection without answering (a lost response)
                    self.close_connection = True
                    self.connection.close()
                    return
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method, path, headers, body):
        raise NotImplementedError


class WebhookReceiver(Peer):
    """Verifies the HMAC signature, refuses batches over `max_rows` (400), answers 429 with
    Retry-After to the requests numbered in `throttle`, and applies each row once per
    idempotency key. `fail_from` makes every batch from that number on fail with 500;
    `lose_answer_of` applies those batches but drops the connection before answering."""

    def __init__(self, secret: str, max_rows: int = 1000, throttle=(), retry_after: str = "3",
                 fail_from: int | None = None, lose_answer_of=(), refuse_rows=()):
        super().__init__()
        self.secret, self.max_rows, self.throttle, self.retry_after = secret, max_rows, set(throttle), retry_after
        self.fail_from, self.lose_answer_of, self.refuse_rows = fail_from, set(lose_answer_of), set(refuse_rows)
        self.count = 0
        self.batches = 0
        self.applied: dict[str, dict] = {}  # idempotency key -> row
        self.deliveries = Counter()  # idempotency key -> times received
        self.erased: list[dict] = []

    def handle(self, method, path, headers, body):
        self.count += 1
        if not verify(self.secret, headers.get(TIMESTAMP_HEADER, ""), body, headers.get(SIGNATURE_HEADER, "")):
            return 401, {}, {"error": "bad signature"}
        if not headers.get(IDEMPOTENCY_HEADER):
            return 400, {}, {"error": "Idempotency-Key header required"}
        if self.count in self.throttle:
            return 429, {"Retry-After": self.retry_after}, {"error": "slow down"}
        doc = json.loads(body)
        if "erase" in doc:
            self.erased.append(doc["erase"])
            return 200, {}, {}
        if len(doc["rows"]) > self.max_rows:
            return 400, {}, {"error": f"at most {self.max_rows} rows per batch"}
        self.batches += 1
        if self.fail_from is not None and self.batches >= self.fail_from:
            return 500, {}, {"error": "down"}
        results = []
        for row in doc["rows"]:
            if row["row_key"] in self.refuse_rows:
                results.append({"row_key": row["row_key"], "ok": False, "error": "invalid address"})
                continue
            self.deliveries[row["idempotency_key"]] += 1
            self.applied.setdefault(row["idempotency_key"], row)
        if self.batches in self.lose_answer_of:
            return None, {}, None
        return 200, {}, {"results": results}

    def changes(self) -> Counter:
        """(op, row_key) -> times applied (after deduplication on idempotency key)."""
        return Counter((r["op"], r["row_key"]) for r in self.applied.values())


class BrazeServer(Peer):
    """`POST /users/track`: Bearer key, at most 75 objects combined (400 above), 429 with
    Retry-After to the requests numbered in `throttle`; keeps users by external_id."""

    def __init__(self, api_key: str, throttle=(), retry_after: str = "7", limit: int = 75):
        super().__init__()
        self.api_key, self.throttle, self.retry_after, self.limit = api_key, set(throttle), retry_after, limit
        self.count = 0
        self.users: dict[str, dict] = {}
        self.events: list[dict] = []
        self.sizes: list[int] = []
        self.deleted: list[str] = []

    def handle(self, method, path, headers, body):
        self.count += 1
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {}, {"message": "Invalid API key"}
        if self.count in self.throttle:
            return 429, {"Retry-After": self.retry_after}, {"message": "rate limit"}
        doc = json.loads(body)
        if path == "/users/delete":
            self.deleted += doc.get("external_ids", [])
            return 201, {}, {"deleted": len(doc.get("external_ids", [])), "message": "success"}
        total = sum(len(doc.get(k, [])) for k in ("attributes", "events", "purchases"))
        if total > self.limit:
            return 400, {}, {"message": f"too many objects: {total} > {self.limit}"}
        self.sizes.append(total)
        errors = []
        for i, attrs in enumerate(doc.get("attributes", [])):
            uid = attrs.get("external_id") or attrs.get("email")
            if "@" not in str(attrs.get("email", "x@y")):
                errors.append({"type": "Invalid email", "input_array": "attributes", "index": i})
                continue
            user = self.users.setdefault(uid, {"segments": set()})
            for k, v in attrs.items():
                if k == "segments":
                    user["segments"] |= set(v.get("add", []))
                    user["segments"] -= set(v.get("remove", []))
                elif k != "external_id":
                    user[k] = v
        self.events += doc.get("events", [])
        answer = {"message": "success", "attributes_processed": len(doc.get("attributes", [])) - len(errors)}
        if errors:
            answer["errors"] = errors
        return 201, {}, answer


class MailchimpServer(Peer):
    """Marketing API 3.0 subset: batch subscribe (500 members), static segment add/remove (500
    each), delete-permanent; HTTP Basic with the API key."""

    def __init__(self, api_key: str, list_id: str, throttle=()):
        super().__init__()
        self.api_key, self.list_id, self.throttle = api_key, list_id, set(throttle)
        self.count = 0
        self.members: dict[str, str] = {}  # email -> status
        self.segments: dict[str, set[str]] = {}
        self.deleted: list[str] = []

    def handle(self, method, path, headers, body):
        self.count += 1
        expected = "Basic " + base64.b64encode(f"anystring:{self.api_key}".encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {}, {"title": "API Key Invalid", "status": 401}
        if self.count in self.throttle:
            return 429, {"Retry-After": "2"}, {"title": "Too Many Requests", "status": 429}
        doc = json.loads(body or b"{}")
        parts = path.strip("/").split("/")  # 3.0, lists, id, ...
        if parts[:3] != ["3.0", "lists", self.list_id]:
            return 404, {}, {"title": "Resource Not Found", "status": 404}
        if len(parts) == 3:
            if len(doc["members"]) > 500:
                return 400, {}, {"title": "Invalid Resource", "detail": "at most 500 members", "status": 400}
            errors = []
            for m in doc["members"]:
                if "@" not in m["email_address"]:
                    errors.append({"email_address": m["email_address"], "error": "invalid email", "error_code": "ERROR_GENERIC"})
                else:
                    self.members[m["email_address"].lower()] = m["status"]
            return 200, {}, {"new_members": [], "updated_members": [], "errors": errors, "error_count": len(errors)}
        if parts[3] == "segments":
            add, remove = doc.get("members_to_add", []), doc.get("members_to_remove", [])
            if len(add) > 500 or len(remove) > 500:
                return 400, {}, {"title": "Invalid Resource", "status": 400,
                                 "detail": "Maximum allowed member items exceeded, please provide at most 500 items"}
            seg = self.segments.setdefault(parts[4], set())
            missing = [e for e in add if e.lower() not in self.members]
            seg |= {e.lower() for e in add if e.lower() in self.members}
            seg -= {e.lower() for e in remove}
            errors = [{"email_addresses": missing, "error": "Email addresses not on the list"}] if missing else []
            return 200, {}, {"total_added": len(add) - len(missing), "errors": errors, "error_count": len(errors)}
        if parts[3] == "members" and parts[-1] == "delete-permanent":
            self.deleted.append(parts[4])
            return 204, {}, None
        return 404, {}, {"status": 404}
