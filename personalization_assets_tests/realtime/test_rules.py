"""Trigger rules on a simulated clock: timing, cancellation, out-of-order orders, guards, limits."""

from datetime import timedelta

from personalization_assets.realtime.guards import CustomerState

from personalization_assets_tests.realtime.helpers import LATE, T0, H, M, engine, ev, kinds, run


def test_fires_only_once_due_plus_lateness_has_passed():
    e = engine("cart_abandonment")
    out = run(e, [ev("Product Added", T0)], T0 + H + LATE - timedelta(seconds=1))
    assert kinds(out) == []
    (fire,) = kinds(e.advance(T0 + H + LATE))
    assert (fire.trigger, fire.customer, fire.group) == ("cart_abandonment", "u1", "cart_id:c1")
    assert fire.due_at == T0 + H and fire.window_start == T0
    assert e.advance(T0 + 10 * H) == []  # fired once, timer gone


def test_cart_activity_resets_the_timer():
    e = engine("cart_abandonment")
    out = run(e, [ev("Product Added", T0), ev("Cart Viewed", T0 + 30 * M)], T0 + H + LATE)
    assert kinds(out) == []
    (fire,) = kinds(e.advance(T0 + 90 * M + LATE))
    assert fire.due_at == T0 + 90 * M and fire.window_start == T0


def test_order_cancels_at_once_by_cart_id():
    e = engine("cart_abandonment")
    out = run(e, [ev("Product Added", T0), ev("Order Completed", T0 + 10 * M, user=None)], T0 + 10 * M)
    (cancel,) = kinds(out, "cancel")
    assert cancel.reason == "cart_id" and cancel.decided_at == T0 + 10 * M
    assert e.timers == {} and kinds(e.advance(T0 + 5 * H)) == []


def test_order_cancels_by_checkout_id_when_the_cart_id_is_missing():
    e = engine("cart_abandonment")
    events = [ev("Product Added", T0), ev("Checkout Started", T0 + M, checkout="k1"),
              ev("Order Updated", T0 + 5 * M, user=None, cart=None, checkout="k1")]
    out = run(e, events, T0 + 5 * H)
    assert kinds(out) == [] and [d.reason for d in kinds(out, "cancel")] == ["checkout_id"]


def test_order_by_the_same_customer_within_the_window_cancels():
    e = engine("cart_abandonment")
    out = run(e, [ev("Product Added", T0), ev("Order Completed", T0 + 20 * M, cart=None)], T0 + 5 * H)
    assert kinds(out) == [] and [d.reason for d in kinds(out, "cancel")] == ["customer"]


def test_an_old_order_of_the_customer_does_not_cancel_a_new_cart():
    e = engine("cart_abandonment")
    events = [ev("Order Completed", T0 - 3 * H, cart="old"), ev("Product Added", T0)]
    assert [d.customer for d in kinds(run(e, events, T0 + 5 * H))] == ["u1"]


def test_order_received_before_the_cart_event_still_cancels():
    """Out of order on the bus: the order (event time after the cart) is consumed first."""
    e = engine("cart_abandonment")
    events = [ev("Order Completed", T0 + 5 * M, received=T0 + 6 * M),
              ev("Product Added", T0, received=T0 + 7 * M)]
    out = run(e, events, T0 + 5 * H)
    assert kinds(out) == [] and [d.reason for d in kinds(out, "cancel")] == ["out_of_order"]


def test_late_order_within_allowed_lateness_still_cancels():
    """Ordered 1 s before the cart was due; the order event reaches the bus 110 s later."""
    e = engine("cart_abandonment")
    order_at = T0 + H - timedelta(seconds=1)
    out = run(e, [ev("Product Added", T0)], T0 + H + timedelta(seconds=100))
    assert kinds(out) == []  # due, but the watermark (frontier - lateness) has not passed it
    out = run(e, [ev("Order Completed", order_at, received=order_at + timedelta(seconds=110))],
              T0 + 5 * H)
    assert kinds(out) == [] and kinds(out, "cancel")


def test_anonymous_cart_is_cancelled_by_the_identified_order():
    e = engine("cart_abandonment")
    events = [ev("Product Added", T0, user=None, anon="a1", cart="c9"),
              ev("Order Completed", T0 + 5 * M, user="u9", anon="a1", cart=None)]
    assert kinds(run(e, events, T0 + 5 * H)) == []


def test_guards_are_read_at_fire_time():
    states = {"u1": CustomerState(unsubscribed=True), "u2": CustomerState(consent_processing=False),
              "u3": CustomerState(last_purchase_at=T0 + 30 * M), "u4": CustomerState()}
    e = engine("cart_abandonment", states=states, allow_unknown=False)
    events = [ev("Product Added", T0, user=u, cart=f"c-{u}") for u in ("u1", "u2", "u3", "u4", "u5")]
    out = run(e, events, T0 + 5 * H)
    reasons = {d.customer: d.reason for d in kinds(out, "suppress")}
    assert reasons == {"u1": "unsubscribed", "u2": "no_consent", "u3": "purchased",
                       "u5": "unknown_customer"}
    assert [d.customer for d in kinds(out)] == ["u4"]


def test_cooldown_per_customer_and_trigger():
    e = engine("cart_abandonment")
    out = run(e, [ev("Product Added", T0, cart="a")], T0 + 2 * H)
    out += run(e, [ev("Product Added", T0 + 2 * H, cart="b")], T0 + 4 * H)
    out += run(e, [ev("Product Added", T0 + 30 * H, cart="c")], T0 + 40 * H)
    assert [(d.kind, d.group, d.reason) for d in out] == [
        ("fire", "cart_id:a", None), ("suppress", "cart_id:b", "cooldown"), ("fire", "cart_id:c", None)]


def test_frequency_cap_counts_all_triggers():
    e = engine(cap=2)
    out = run(e, [ev("Product Viewed", T0, cart=None)], T0 + 3 * H)
    out += run(e, [ev("Product Added", T0 + 3 * H, cart="a")], T0 + 5 * H)
    out += run(e, [ev("Order Completed", T0 + 6 * H, cart="x", order="o1")], T0 + 5 * 24 * H)
    assert [(d.kind, d.trigger, d.reason) for d in out if d.kind in ("fire", "suppress")] == [
        ("fire", "browse_abandonment", None), ("fire", "cart_abandonment", None),
        ("suppress", "post_purchase_cross_sell", "frequency_cap")]


def test_browse_abandonment_is_cancelled_by_adding_to_cart():
    e = engine("browse_abandonment")
    out = run(e, [ev("Product Viewed", T0, cart=None), ev("Product Added", T0 + 10 * M)], T0 + 10 * H)
    assert kinds(out) == [] and [d.reason for d in kinds(out, "cancel")] == ["customer"]


def test_cross_sell_three_days_after_an_order_unless_refunded():
    e = engine("post_purchase_cross_sell")
    events = [ev("Order Completed", T0, cart=None, order="o1"),
              ev("Order Completed", T0, user="u2", cart=None, order="o2"),
              ev("Order Refunded", T0 + 24 * H, user="u2", cart=None, order="o2")]
    (fire,) = kinds(run(e, events, T0 + 4 * 24 * H))
    assert (fire.customer, fire.group, fire.due_at) == ("u1", "order_id:o1", T0 + 72 * H)


def test_late_start_event_of_an_already_fired_session_does_not_fire_again():
    e = engine("cart_abandonment")
    out = run(e, [ev("Product Added", T0)], T0 + 2 * H)
    out += run(e, [ev("Cart Viewed", T0 + 10 * M, received=T0 + 3 * H)], T0 + 10 * H)
    assert len(kinds(out)) == 1


def test_an_identify_call_names_the_anonymous_cart_owner():
    from personalization_assets.realtime.events import from_segment

    e = engine("cart_abandonment")
    names = frozenset({"Product Added", "Order Completed"})
    cart = from_segment({"type": "track", "event": "Product Added", "anonymousId": "a7",
                         "timestamp": T0.isoformat(), "properties": {"cart_id": "c7"}}, T0, names)
    login = from_segment({"type": "identify", "userId": "u7", "anonymousId": "a7",
                          "traits": {"email": "x@example.com"}}, T0 + M, names)
    assert from_segment({"type": "page", "anonymousId": "a7"}, T0, names) is None
    (fire,) = kinds(run(e, [cart, login], T0 + 2 * H))
    assert fire.customer == "u7"
