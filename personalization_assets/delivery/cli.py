"""`personalization deliver`: the sender beside the trigger engine, and the outbox page.

Also `python -m personalization_assets.delivery` (what the tests start and kill).
Settings not given as flags come from the same variables as the Dagster activation assets:
SMTP_HOST/PORT/FROM/USERNAME/PASSWORD/STARTTLS, DELIVERY_WEBHOOK_URL/SECRET, BRAZE_REST_URL/API_KEY,
UNSUBSCRIBE_BASE_URL/SECRET.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import threading
from pathlib import Path

CHANNELS = ("smtp", "webhook", "braze", "preview")


def add_deliver_command(sub) -> None:
    """Register `deliver` on the platform CLI's subparsers."""
    p = sub.add_parser("deliver", help="send the trigger engine's fires (SMTP, webhook or Braze) through"
                       " a durable outbox, and serve the outbox page")
    configure_parser(p)
    p.set_defaults(func=run_from_args)


def configure_parser(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--ledger", default=None, help="the trigger engine's ledger (default: <data dir>/triggers.sqlite)")
    p.add_argument("--outbox", default=None, help="outbox SQLite file (default: outbox.sqlite next to the ledger)")
    p.add_argument("--guard", default=None, help="consent/unsubscribe store re-checked before each send"
                   " (default: <data dir>/trigger_guard.sqlite)")
    p.add_argument("--allow-unknown", action="store_true",
                   help="send to customers missing from the guard store (demo only, as for `triggers`; default: %(default)s)")
    p.add_argument("--warehouse", default=None, help="DuckDB file the payloads are copied from when no run"
                   " holds it (default: the local warehouse; '' = never, payloads come from an asset)")
    p.add_argument("--email-events-bus", default=None,
                   help="the e-mail events bus the webhooks and the one-click endpoint append to, read right before"
                   " each send so an unsubscribe, hard bounce or complaint stops it as it arrives (default:"
                   " EMAIL_EVENTS_BUS_URL, else <data dir>/email_events.db; '' = only the guard store)")
    p.add_argument("--channel", choices=CHANNELS, default=env("DELIVERY_CHANNEL", "smtp"), help="where e-mails go (%(default)s; preview: nowhere, shown on the outbox page only)")
    p.add_argument("--smtp-host", default=env("SMTP_HOST", "127.0.0.1"), help="SMTP server (%(default)s)")
    p.add_argument("--smtp-port", type=int, default=int(env("SMTP_PORT", "1025")), help="SMTP port (%(default)s)")
    p.add_argument("--smtp-from", default=env("SMTP_FROM", "Shop <shop@localhost>"), help="From: (%(default)s)")
    p.add_argument("--webhook-url", default=env("DELIVERY_WEBHOOK_URL", ""),
                   help="an ESP-style send API; the secret comes from DELIVERY_WEBHOOK_SECRET"
                   " (default: DELIVERY_WEBHOOK_URL, else none)")
    p.add_argument("--rate", type=float, default=float(env("DELIVERY_RATE", "200")),
                   help="sends per second at most (token bucket; a 429 halves it, Retry-After pauses it;"
                   " default: %(default)s, or DELIVERY_RATE when set)")
    p.add_argument("--holdouts", action=argparse.BooleanOptionalAction,
                   default=env("DELIVERY_HOLDOUTS", "on").lower() not in ("off", "0", "false", "no"),
                   help="apply the experiments (on by default; --no-holdouts or DELIVERY_HOLDOUTS=off: none): the"
                   " global control group never receives e-mail, triggers' `holdout:` control fires are logged as"
                   " ghost exposures in exposures.sqlite next to the outbox, not sent, and the send-time experiment"
                   " holds treated fires for the customer's preferred hour")
    p.add_argument("--max-attempts", type=int, default=8, help="sends of one fire before it fails for good (%(default)s)")
    p.add_argument("--page-port", type=int, default=8090,
                   help="outbox page on 127.0.0.1 (%(default)s; 0 = any free port, -1 = none)")


def _unsubscribe():
    from .render import Unsubscribe

    base = os.environ.get("UNSUBSCRIBE_BASE_URL") or "https://localhost/unsubscribe"
    secret = os.environ.get("UNSUBSCRIBE_SECRET", "")
    if not secret:
        print("deliver: UNSUBSCRIBE_SECRET is not set: the links in these messages use a random key and will"
              " not verify at the unsubscribe endpoint; set it (the same as the endpoint's) outside a demo",
              file=sys.stderr)
        secret = secrets.token_urlsafe(32)
    return Unsubscribe(base, secret)


def build_channel(args):
    from ..activation.ratelimit import TokenBucket
    from .channels import BrazeChannel, PreviewChannel, SmtpChannel, WebhookChannel

    bucket = TokenBucket(rate=args.rate, burst=max(1.0, args.rate / 10))
    if args.channel == "smtp":
        return SmtpChannel(args.smtp_host, args.smtp_port, args.smtp_from, bucket,
                           username=os.environ.get("SMTP_USERNAME") or None,
                           password=os.environ.get("SMTP_PASSWORD") or None,
                           starttls=os.environ.get("SMTP_STARTTLS", "") == "1"), f"smtp://{args.smtp_host}:{args.smtp_port}"
    if args.channel == "preview":
        return PreviewChannel(bucket), "(nothing delivered: e-mails stay on the outbox page)"
    if args.channel == "webhook":
        secret = os.environ.get("DELIVERY_WEBHOOK_SECRET", "")
        if not args.webhook_url or not secret:
            raise SystemExit("error: --channel webhook needs --webhook-url (or DELIVERY_WEBHOOK_URL) and"
                             " DELIVERY_WEBHOOK_SECRET: every request is signed")
        return WebhookChannel(args.webhook_url, secret, bucket), args.webhook_url
    url, key = os.environ.get("BRAZE_REST_URL", ""), os.environ.get("BRAZE_API_KEY", "")
    if not url or not key:
        raise SystemExit("error: --channel braze needs BRAZE_REST_URL and BRAZE_API_KEY")
    return BrazeChannel(url, key, bucket), url


def _serve_page(outbox: Path, port: int, ready):
    import uvicorn

    from .page import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(outbox), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="outbox-page")
    thread.start()
    for _ in range(200):
        if server.started:
            break
        ready.wait(0.025)
    bound = server.servers[0].sockets[0].getsockname()[1] if server.started else None
    return server, thread, bound


def run_from_args(args) -> int:
    from .. import settings
    from ..email_events.bus import email_events_bus_url
    from ..realtime.guards import SqliteGuardProvider
    from ..redact import redact_url
    from ..shutdown import stop_on_signals
    from .outbox import Outbox, default_path
    from .payloads import PayloadStore
    from .sender import AlreadyRunning, RetryPolicy, Sender, lock_outbox, run_sender
    from .suppressions import BusSuppressions

    ledger = Path(args.ledger or settings.data_dir() / "triggers.sqlite").resolve()
    outbox_path = Path(args.outbox or (ledger.with_name("outbox.sqlite") if args.ledger else default_path())).resolve()
    guard_path = args.guard or str(settings.data_dir() / "trigger_guard.sqlite")
    warehouse = settings.warehouse_path() if args.warehouse is None else (args.warehouse or None)
    channel, target = build_channel(args)
    try:
        lock = lock_outbox(outbox_path)
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = stop_on_signals()
    outbox = Outbox(outbox_path)
    payloads = PayloadStore(outbox_path.with_name("delivery_payloads.sqlite"))
    holdouts = send_time = None
    if args.holdouts:
        from ..experiments.holdouts import SEND_TIME_KIND, HoldoutGate, payload_customer_key
        from ..experiments.send_time import SendTimeGate

        def key_of(customer_id):
            return payload_customer_key(payloads, customer_id)

        holdouts = HoldoutGate.from_yaml(outbox_path.with_name("exposures.sqlite"), key_of=key_of)
        timing = next((e for e in holdouts.experiments if e.kind == SEND_TIME_KIND), None)
        send_time = SendTimeGate(timing, holdouts.exposures, key_of=key_of) if timing else None
    bus_url = email_events_bus_url() if args.email_events_bus is None else args.email_events_bus
    suppressions = BusSuppressions(outbox.conn, bus_url) if bus_url else None
    sender = Sender(outbox, ledger, payloads, SqliteGuardProvider(guard_path, allow_unknown=args.allow_unknown), channel, _unsubscribe(),
                    policy=RetryPolicy(max_attempts=args.max_attempts), warehouse_path=warehouse, holdouts=holdouts,
                    send_time=send_time, suppressions=suppressions)
    server = None
    page = "no page"
    if args.page_port >= 0:
        server, thread, port = _serve_page(outbox_path, args.page_port, stop)
        page = f"outbox page on http://127.0.0.1:{port}/" if port else "the outbox page could not start"
    experiments = (", ".join(e.name for e in holdouts.experiments) or "none declared") if holdouts else "off"
    print(f"deliver: fires from {ledger} -> outbox {outbox_path} -> {args.channel} {target}; {page};"
          f" experiments: {experiments}; unsubscribes and bounces also from"
          f" {redact_url(bus_url) if bus_url else 'the guard store only'}; Ctrl-C stops", flush=True)
    try:
        run_sender(sender, stop)
    finally:
        if server is not None:
            server.should_exit = True
            thread.join(5)
        outbox.close()
        payloads.close()
        lock.close()
    print("deliver: stopped", flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m personalization_assets.delivery", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run_from_args(parser.parse_args(argv))
