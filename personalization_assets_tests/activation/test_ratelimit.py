"""The adaptive token bucket on a fake clock, Retry-After parsing, and signature refusal."""

from email.utils import format_datetime
from datetime import datetime, timezone

from personalization_assets.activation.destinations import SignedWebhook
from personalization_assets.activation.model import SyncRow
from personalization_assets.activation.ratelimit import TokenBucket, parse_retry_after

from .servers import FakeClock, WebhookReceiver


def test_bucket_spaces_requests_at_its_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=2, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(12):
        bucket.acquire()
    assert abs((clock.now - start) - 1.0) < 1e-6  # 2 from the burst, then 10 at 10 per second


def test_429_halves_the_rate_honours_retry_after_and_recovers():
    clock = FakeClock()
    bucket = TokenBucket(rate=8, burst=1, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    bucket.throttled(retry_after=30)
    assert bucket.rate == 4
    before = clock.now
    bucket.acquire()
    assert clock.now - before >= 30
    for _ in range(20):
        bucket.succeeded()
    assert bucket.rate == bucket.max_rate == 8
    for _ in range(100):
        bucket.throttled(None)
    assert bucket.rate == bucket.min_rate > 0  # never stops altogether


def test_retry_after_as_seconds_or_http_date():
    now = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(format_datetime(now.replace(minute=2), usegmt=True), now.timestamp()) == 120
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_a_forged_signature_is_refused_and_not_retried(transport):
    with WebhookReceiver("right") as receiver:
        (result,) = SignedWebhook(receiver.url, "wrong", transport).send([SyncRow("r", "c", "a@x.io", "added", "vip")], "b")
    assert not result.ok and not result.retryable and result.error.startswith("401")
    assert receiver.count == 1 and not receiver.applied
