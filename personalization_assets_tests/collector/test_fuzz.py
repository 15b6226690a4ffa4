"""Fuzzing the running collector, webhook apps and one-click unsubscribe endpoint over real HTTP
(issue 18): hostile batches, single events on every route, signed, forged or replayed webhooks and
one-click requests of every shape never get a 5xx, a well-formed request is never refused for what
its events hold, the counts add up, and every acknowledged event is stored once. A few hundred
requests here; `python -m bench.fuzz` sends 10,000 per endpoint."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from .fuzzing import ENDPOINTS, SINGLE, Target

EXAMPLES = {"/v1/batch": 100, "/v1/import": 25, **{p: 15 for p in SINGLE}, "/webhooks/sendgrid": 40,
            "/webhooks/mailgun": 40, "/webhooks/generic": 40, "/unsubscribe": 80}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    t = Target(tmp_path_factory.mktemp("fuzz"))
    yield t
    t.close()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_fuzzed_requests_never_fail_the_server_or_lose_an_event(target, endpoint):
    @settings(max_examples=EXAMPLES[endpoint], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(req=target.strategy(endpoint))
    def run(req):
        out = target.check(req)
        assert not out.problems, (out.status, out.problems, req.path, req.headers, req.body[:300])

    run()
