"""JSON over HTTP for the platform destinations: rate limit, 429 with Retry-After, 5xx retries.

A 4xx other than 429 is the platform refusing the request as written (too large, malformed,
unauthorized): it is not retried, and the caller turns it into failed rows with the platform's
message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests

from .model import DeliveryError
from .ratelimit import TokenBucket, parse_retry_after


@dataclass
class HttpTransport:
    bucket: TokenBucket
    timeout: float = 30.0
    max_attempts: int = 6
    backoff: float = 0.5  # seconds, doubled per attempt for 5xx and connection errors
    session: requests.Session = field(default_factory=requests.Session)

    def request(self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
                data: bytes | None = None) -> requests.Response:
        """The response of the first attempt that is neither 429 nor 5xx; raises DeliveryError on
        a 4xx refusal (not retryable) or when every attempt failed (retryable)."""
        payload = data if data is not None else (None if body is None else json.dumps(body).encode())
        sent_headers = {"Content-Type": "application/json", **(headers or {})}
        last = "no attempt"
        for attempt in range(self.max_attempts):
            self.bucket.acquire()
            try:
                response = self.session.request(method, url, data=payload, headers=sent_headers,
                                                timeout=self.timeout)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
                self.bucket.sleep(self.backoff * 2 ** attempt)
                continue
            if response.status_code == 429:
                self.bucket.throttled(parse_retry_after(response.headers.get("Retry-After")))
                last = f"429 from {url}"
                continue
            if response.status_code >= 500:
                last = f"{response.status_code} from {url}: {response.text[:200]}"
                self.bucket.sleep(self.backoff * 2 ** attempt)
                continue
            if response.status_code >= 400:
                raise DeliveryError(f"{response.status_code} from {url}: {response.text[:300]}", retryable=False,
                                    status=response.status_code)
            self.bucket.succeeded()
            return response
        raise DeliveryError(f"gave up after {self.max_attempts} attempts: {last}", retryable=True)
