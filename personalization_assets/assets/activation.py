"""Activation: the demo's segments synced to the file export and the signed webhook, the sticky
suppression list, and the check that every unsubscribe reached every destination in 2 days.

Thin shells over `personalization_assets.activation`. The file destination works out of the box
(`<data dir>/exports`); the webhook, Braze, Mailchimp and SMTP assets run only when their
environment variables are set (read when the asset runs, never at import), and otherwise
materialize with a `skipped` note.
"""

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd

from .. import settings
from ..activation import suppression as suppression_list
from ..activation.destinations import BrazeTrack, FileExport, MailchimpAudience, SignedWebhook, SmtpMail
from ..activation.engine import SyncSpec, run_sync
from ..activation.erasure import PiiTable, process_erasure_queue
from ..activation.http import HttpTransport
from ..activation.identity_changes import MERGE, pending_changes, propagate_identity_changes
from ..activation.model import EVENTS, MIRROR
from ..activation.ratelimit import TokenBucket
from ..audiences.membership import load_segments
from ..activation.sources import segment_members_sql, trigger_fires_sql
from ..privacy import mask_frame
from ..resources.warehouse import Warehouse
from .common import EAGER, WAREHOUSE_POOL, frame_metadata, utc_now

SUPPRESSION_KEY = dg.AssetKey(["activation", "suppression"])
SYNC_DEPS = [["marts", "segment_membership"], ["marts", "customer_profiles"], SUPPRESSION_KEY,
             ["marts", "experiment_assignments"]]  # holdouts: control members are not synced
# Physical tables an asset writes besides its own `schema.table` key (read by `pii_tables`).
PII_TABLES_META = "activation/pii_tables"
SYNC_TABLES = ["activation.sync_state", "activation.sync_failed_rows", "activation.suppression_propagation",
               "activation.erasure_queue"]


class SyncConfig(dg.Config):
    segments: list[str] = []  # empty: every sendable segment definition
    mode: str = MIRROR
    dry_run: bool = False
    export_dir: str = ""  # file destination; empty: <data dir>/exports
    export_format: str = "csv"  # csv | parquet
    webhook_url: str = ""  # webhook destination; empty: ACTIVATION_WEBHOOK_URL, and off when unset


def _segments(config: SyncConfig) -> list[str]:
    return config.segments or [s.name for s in load_segments() if s.sendable]


def _sync(context: dg.AssetExecutionContext, warehouse: Warehouse, destination, config: SyncConfig,
          segments: list[str] | None = None) -> dg.MaterializeResult:
    now = utc_now()
    reports, totals = [], {"added": 0, "changed": 0, "removed": 0, "failed": 0}
    with warehouse.connect() as conn:
        # Merges/unmerges first: the diff below must see the survivor's rows, not re-add the person.
        identity = {"merged": 0, "unmerged": 0, "deleted": 0}
        if config.dry_run:
            for change in pending_changes(conn, destination.name):
                identity["merged" if change.kind == MERGE else "unmerged"] += 1
        else:
            identity = propagate_identity_changes(conn, destination, now)
        for segment in segments or _segments(config):
            report = run_sync(conn, SyncSpec(destination, segment, config.mode, segment_members_sql(conn)),
                              dry_run=config.dry_run)
            counts = report.counts()
            reports.append({"segment": segment, **counts, "batches": report.batches, "seconds": round(report.seconds, 3)})
            for k in totals:
                totals[k] += counts[k]
        propagated = failed_unsubscribes = erased = 0
        if not config.dry_run:
            suppression_list.request_propagation(conn, [destination.name])
            propagated, failed_unsubscribes = suppression_list.propagate(conn, destination, now)
            erased = process_erasure_queue(conn, [destination], now).get(destination.name, 0)
    frame = pd.DataFrame(reports)
    if totals["failed"]:
        context.log.warning(f"{totals['failed']} rows failed for {destination.name}: see activation.sync_failed_rows")
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, **{k: dg.MetadataValue.int(v) for k, v in totals.items()}, dry_run=config.dry_run,
        unsubscribes_propagated=propagated, unsubscribes_failed=failed_unsubscribes, people_erased=erased,
        identity_merged=identity["merged"], identity_unmerged=identity["unmerged"],
        identity_profiles_deleted=identity["deleted"]))


def _transport() -> HttpTransport:
    return HttpTransport(TokenBucket(rate=float(os.environ.get("ACTIVATION_WEBHOOK_RATE", "20")), burst=5))


@dg.asset(key=["activation", "file_sync"], deps=SYNC_DEPS, group_name="activation", pool=WAREHOUSE_POOL,
          kinds={"csv", "parquet"}, tags={"pii": "true"}, metadata={PII_TABLES_META: SYNC_TABLES},
          automation_condition=EAGER)
def file_sync(context: dg.AssetExecutionContext, config: SyncConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """The sendable segments as bulk-upload files (one per batch; only what changed since the last
    acknowledged sync): added, changed and removed members with their merge fields."""
    folder = Path(config.export_dir) if config.export_dir else settings.data_dir() / "exports"
    return _sync(context, warehouse, FileExport(folder, format=config.export_format), config)


@dg.asset(key=["activation", "webhook_sync"], deps=SYNC_DEPS, group_name="activation", pool=WAREHOUSE_POOL,
          kinds={"api"}, tags={"pii": "true"}, metadata={PII_TABLES_META: SYNC_TABLES}, automation_condition=EAGER)
def webhook_sync(context: dg.AssetExecutionContext, config: SyncConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """The sendable segments pushed to the signed webhook (HMAC-SHA256, idempotency keys): only the
    changes, each delivered once. Skipped, with a note, when no webhook URL is configured."""
    url = config.webhook_url or os.environ.get("ACTIVATION_WEBHOOK_URL", "")
    if not url:
        context.log.info("no webhook URL (ACTIVATION_WEBHOOK_URL): nothing sent")
        return dg.MaterializeResult(metadata={"skipped": "no webhook URL configured", "dagster/row_count": 0})
    secret = os.environ.get("ACTIVATION_WEBHOOK_SECRET", "")
    if not secret:
        raise ValueError("ACTIVATION_WEBHOOK_URL is set but ACTIVATION_WEBHOOK_SECRET is not: payloads must be signed")
    return _sync(context, warehouse, SignedWebhook(url, secret, _transport()), config)


def _skipped(context: dg.AssetExecutionContext, missing: list[str]) -> dg.MaterializeResult:
    context.log.info(f"not configured ({', '.join(missing)} unset): nothing sent")
    return dg.MaterializeResult(metadata={"skipped": f"not configured: {', '.join(missing)} unset", "dagster/row_count": 0})


def sender_outbox() -> Path | None:
    """The sender service's outbox when it holds any fire: that deployment delivers through
    `personalization deliver`, which keys every send by fire; the batch path keys its own sends
    differently and would e-mail each of those fires a second time."""
    from ..activity import outbox_path

    path = outbox_path()
    if not path.exists():
        return None
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
        found = conn.execute("select 1 from sqlite_master where name = 'outbox'").fetchone() and \
            conn.execute("select 1 from outbox limit 1").fetchone()
    return path if found else None


def _missing(*names: str) -> list[str]:
    return [n for n in names if not os.environ.get(n)]


@dg.asset(key=["activation", "braze_sync"], deps=SYNC_DEPS, group_name="activation", pool=WAREHOUSE_POOL,
          kinds={"api"}, tags={"pii": "true"}, metadata={PII_TABLES_META: SYNC_TABLES}, automation_condition=EAGER)
def braze_sync(context: dg.AssetExecutionContext, config: SyncConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """The sendable segments on Braze user profiles (the `segments` array attribute, profile
    fields as attributes) through /users/track, 75 objects per request. Off unless BRAZE_REST_URL
    and BRAZE_API_KEY are set."""
    if missing := _missing("BRAZE_REST_URL", "BRAZE_API_KEY"):
        return _skipped(context, missing)
    braze = BrazeTrack(os.environ["BRAZE_REST_URL"], os.environ["BRAZE_API_KEY"],
                       HttpTransport(TokenBucket(rate=float(os.environ.get("BRAZE_RATE", "900")), burst=50)))
    return _sync(context, warehouse, braze, config)


@dg.asset(key=["activation", "mailchimp_sync"], deps=SYNC_DEPS, group_name="activation", pool=WAREHOUSE_POOL,
          kinds={"api"}, tags={"pii": "true"}, metadata={PII_TABLES_META: SYNC_TABLES}, automation_condition=EAGER)
def mailchimp_sync(context: dg.AssetExecutionContext, config: SyncConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Segments as Mailchimp static segments of one audience (members upserted, then added to or
    removed from each segment, 500 per call). Off unless MAILCHIMP_API_KEY, MAILCHIMP_LIST_ID and
    MAILCHIMP_SEGMENT_IDS (JSON: our segment name -> static segment id) are set."""
    if missing := _missing("MAILCHIMP_API_KEY", "MAILCHIMP_LIST_ID", "MAILCHIMP_SEGMENT_IDS"):
        return _skipped(context, missing)
    segment_ids = json.loads(os.environ["MAILCHIMP_SEGMENT_IDS"])
    chimp = MailchimpAudience(os.environ["MAILCHIMP_API_KEY"], os.environ["MAILCHIMP_LIST_ID"], segment_ids,
                              HttpTransport(TokenBucket(rate=float(os.environ.get("MAILCHIMP_RATE", "10")), burst=5)),
                              base_url=os.environ.get("MAILCHIMP_BASE_URL", ""))
    return _sync(context, warehouse, chimp, config, segments=config.segments or sorted(segment_ids))


@dg.asset(key=["activation", "triggered_emails"], group_name="activation", pool=WAREHOUSE_POOL, kinds={"email"},
          deps=[["activation", "trigger_fires"], ["marts", "personalization_payloads"], ["core", "identity_map"],
                SUPPRESSION_KEY], tags={"pii": "true"}, metadata={PII_TABLES_META: SYNC_TABLES})
def triggered_emails(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Transactional e-mails for the real-time triggers' fires (cart abandonment...), each sent
    once over SMTP, rendered from the templates with the customer's merge fields. Off unless
    SMTP_HOST is set (with SMTP_FROM, UNSUBSCRIBE_BASE_URL and UNSUBSCRIBE_SECRET).

    manual: the sender service (`personalization deliver`, started by `personalization up`) sends
    each fire within seconds through its outbox, and `activation_stream_sensor` records its sends
    here as observations; this batch path is for deployments without that service, run on demand
    (it sends nothing where the sender's outbox holds fires: they would go out twice)."""
    host = os.environ.get("SMTP_HOST", "")
    if not host:
        return _skipped(context, ["SMTP_HOST"])
    service = sender_outbox()
    if service is not None:  # one path per deployment: this one would send the sender's fires again
        context.log.info(f"the sender service sends these fires (outbox {service}): nothing sent here")
        return dg.MaterializeResult(metadata={"skipped": f"personalization deliver sends the fires (outbox {service});"
                                              " this batch path would send them a second time", "dagster/row_count": 0})
    missing = [v for v in ("SMTP_FROM", "UNSUBSCRIBE_BASE_URL", "UNSUBSCRIBE_SECRET") if not os.environ.get(v)]
    if missing:
        raise ValueError(f"SMTP_HOST is set but {', '.join(missing)} is not: every message needs a sender "
                         "and a signed one-click unsubscribe link")
    smtp = SmtpMail(host, int(os.environ.get("SMTP_PORT", "25")), os.environ["SMTP_FROM"],
                    os.environ["UNSUBSCRIBE_BASE_URL"], os.environ["UNSUBSCRIBE_SECRET"],
                    username=os.environ.get("SMTP_USERNAME") or None, password=os.environ.get("SMTP_PASSWORD") or None,
                    starttls=os.environ.get("SMTP_STARTTLS", "") == "1")
    with warehouse.connect() as conn:
        triggers = [] if not conn.table_exists("activation", "trigger_fires") else \
            sorted(conn.query("select distinct trigger from activation.trigger_fires where outcome = 'fire'")["trigger"])
        reports = [run_sync(conn, SyncSpec(smtp, t, EVENTS, trigger_fires_sql(conn))) for t in triggers]
    frame = pd.DataFrame([{"trigger": r.segment, "sent": r.counts()["events"], "failed": r.failed} for r in reports],
                         columns=["trigger", "sent", "failed"])
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, sent=dg.MetadataValue.int(int(frame["sent"].sum())), failed=dg.MetadataValue.int(int(frame["failed"].sum()))))


@dg.asset(key=SUPPRESSION_KEY, deps=[["staging", "email_suppressions"], ["staging", "email_events"], ["core", "customers"]],
          group_name="activation", pool=WAREHOUSE_POOL, kinds={"duckdb"}, tags={"pii": "true"},
          automation_condition=EAGER)
def suppression(warehouse: Warehouse) -> dg.MaterializeResult:
    """Who must never be e-mailed again: unsubscribes (one-click, platforms, CRM opt-outs), hard
    bounces, spam complaints, and erased people (hashed address only). Sticky: only an explicit
    opt-in newer than the entry lifts an unsubscribe."""
    with warehouse.connect() as conn:
        frame = suppression_list.build(conn, utc_now())
        suppression_list.write(conn, frame)
    shown = frame.drop(columns=["email_sha256"])
    return dg.MaterializeResult(metadata=frame_metadata(
        shown, by_reason={k: int(v) for k, v in frame["reason"].value_counts().items()},
        by_source={k: int(v) for k, v in frame["source"].value_counts().items()}))


@dg.asset_check(asset=SUPPRESSION_KEY, pool=WAREHOUSE_POOL, description="Every unsubscribe older than 2 days reached every destination "
                                                   "that holds people (the Gmail/Yahoo bulk-sender rule).")
def unsubscribes_propagated(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        holders = []
        if conn.table_exists("activation", "sync_state"):
            holders = sorted(conn.query("select distinct destination from activation.sync_state")["destination"])
        late = suppression_list.unpropagated(conn, holders, utc_now())
    return dg.AssetCheckResult(
        passed=late.empty, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"late": len(late), "destinations": ", ".join(holders) or "none",
                  "examples": dg.MetadataValue.md(mask_frame(late.head(20)).to_markdown(index=False) if len(late) else "_none_")})


def pii_tables(definitions: dg.Definitions) -> list[PiiTable]:
    """Every warehouse table holding personal data, from the asset specs: assets tagged `pii`
    (their `schema.table` key and any tables they list under `activation/pii_tables`), narrowed to
    the columns tagged `pii` when the spec's column schema tags any."""
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for assets_def in definitions.assets or []:
        for spec in getattr(assets_def, "specs", []):
            schema = spec.metadata.get("dagster/column_schema")
            tagged = tuple(c.name for c in schema.columns if (c.tags or {}).get("pii") == "true") if schema else ()
            if spec.tags.get("pii") != "true" and not tagged:
                continue
            names = [".".join(spec.key.path)] if len(spec.key.path) == 2 else []
            names += list(spec.metadata.get(PII_TABLES_META, []) or [])
            for name in names:
                schema_name, _, table = name.partition(".")
                found[(schema_name, table)] = tagged if name == ".".join(spec.key.path) else ()
    return [PiiTable(s, t, cols) for (s, t), cols in sorted(found.items())]


defs = dg.Definitions(assets=[suppression, file_sync, webhook_sync, braze_sync, mailchimp_sync, triggered_emails],
                      asset_checks=[unsubscribes_propagated])
