"""One path per deployment: where the sender service's outbox holds fires, the batch fallback
`activation/triggered_emails` sends nothing (its sends are keyed differently from the sender's,
so each of those fires would reach the customer twice)."""

import dagster as dg

from personalization_assets.assets import activation, marts
from personalization_assets.delivery.outbox import Fire, Outbox

from ..activation.test_assets import env, metadata, smtp_and_fires  # noqa: F401  (fixture)
from ..activation.test_smtp import inbox  # noqa: F401  (fixture)


def test_the_batch_path_sends_nothing_where_the_sender_service_runs(env, inbox, monkeypatch, tmp_path):  # noqa: F811
    warehouse, _ = env
    handler, port = inbox
    smtp_and_fires(warehouse, monkeypatch, port, "('f1', 'cart_abandonment', 'anna', 'fire')")
    outbox = Outbox(tmp_path / "data" / "outbox.sqlite")  # the data dir the env fixture set: the sender's outbox
    outbox.enqueue([Fire("f1", "cart_abandonment", "anna", "cart-1", 0.0, 1.0, 1.0, 1)], "smtp")
    outbox.close()
    assets = [marts.customer_profiles, marts.segments, marts.personalization_payloads, activation.suppression,
              activation.triggered_emails]
    result = dg.materialize(assets, resources={"warehouse": warehouse})
    assert "personalization deliver sends the fires" in metadata(result)["triggered_emails"]["skipped"].value
    assert handler.messages == []  # anna's fire is the sender's: not sent a second time
    (tmp_path / "data" / "outbox.sqlite").unlink()  # a deployment without the service: the fallback sends
    for suffix in ("-wal", "-shm"):
        (tmp_path / "data" / f"outbox.sqlite{suffix}").unlink(missing_ok=True)
    result = dg.materialize(assets, resources={"warehouse": warehouse})
    assert metadata(result)["triggered_emails"]["sent"].value == 1 and len(handler.messages) == 1
