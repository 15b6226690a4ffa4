"""The Node SDKs of Segment (@segment/analytics-node 3.1.0) and RudderStack (@rudderstack/rudder-sdk-node
3.1.1) against a real collector: every call stored once, and an explicit `timestamp` kept as the event
time (rudder-sdk-node also sends originalTimestamp; issue 18, finding 3).

Needs node and the packages of ./node: `npm ci --prefix personalization_assets_tests/collector/node`
(skipped with that reason when they are missing)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from personalization_assets_tests.conftest import unavailable

from personalization_assets.collector.enrich import parse_ts

from .conftest import WRITE_KEY

NODE_DIR = Path(__file__).parent / "node"
INSTALL = f"npm ci --prefix {NODE_DIR.relative_to(Path(__file__).parents[2])}"


def _require_node_sdks() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed", "Node 20 runs these contract tests (apt-get install -y nodejs npm)")
    for package in ("@segment/analytics-node", "@rudderstack/rudder-sdk-node"):
        if not (NODE_DIR / "node_modules" / package).is_dir():
            unavailable(f"{package} is not installed", f"run `{INSTALL}` (.ci/run does)")
    return node


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_node_sdk_events_arrive_once_with_their_event_time(collector, sdk):
    node = _require_node_sdks()
    out = subprocess.run([node, "send_events.js", sdk, collector.url, WRITE_KEY, "200"], cwd=NODE_DIR,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    sent = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(sent) == 200
    records = collector.bus().read(0, limit=10_000)
    by_id: dict[str, list] = {}
    for r in records:
        by_id.setdefault(r.message_id, []).append(r.event)
    assert len(records) == len(sent) and all(len(by_id.get(s["messageId"], [])) == 1 for s in sent)
    for s in sent:
        event = by_id[s["messageId"]][0]
        assert event["receivedAt"] and event["sentAt"]
        if s["timestamp"]:  # an explicit event time wins over the SDK's enqueue time and skew correction
            assert parse_ts(event["timestamp"]) == parse_ts(s["timestamp"]), (sdk, event)
        else:  # set by the SDK at the call: within seconds of receipt
            gap = parse_ts(event["receivedAt"]) - parse_ts(event["timestamp"])
            assert abs(gap.total_seconds()) < 60
