"""The outbox page: what was sent and what was stopped, as a person reads it (127.0.0.1 only).

Each message shows its trigger, the customer (masked: the page is for looking at e-mails, not at
people), the state with its reason, fire -> sent timing, and the rendered HTML in a sandboxed
iframe (no scripts, no same origin), so a template's markup can never act on the page.
"""

from __future__ import annotations

import html
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from ..privacy import mask_email, mask_id
from .outbox import stats

SHOWN = ("sent", "suppressed", "failed")
LIMIT = 100

_STYLE = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
.sent{color:#176317}.suppressed{color:#8a5a00}.failed{color:#a11}
iframe{width:620px;height:260px;border:1px solid #ccc;background:#fff}"""


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{a - b:.2f} s"


def recent(path: Path, limit: int = LIMIT) -> list[dict]:
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        if not conn.execute("select 1 from sqlite_master where name = 'outbox'").fetchone():
            return []
        marks = ", ".join("?" for _ in SHOWN)
        return [dict(r) for r in conn.execute(
            f"select * from outbox where state in ({marks}) order by updated_at desc limit ?", (*SHOWN, limit))]
    finally:
        conn.close()


def _item(r: dict) -> str:
    done = r["sent_at"] or r["suppressed_at"] or r["failed_at"]
    body = (f'<iframe sandbox title="message" srcdoc="{html.escape(r["html"], quote=True)}"></iframe>'
            if r["html"] else "<em>not rendered</em>")
    who = mask_email(r["recipient"]) if r["recipient"] else ""
    return (f'<tr class="message {r["state"]}" data-state="{r["state"]}"><td><b class="{r["state"]}">{r["state"]}</b>'
            f'<br><small>{html.escape(r["reason"] or "")}</small></td>'
            f'<td>{html.escape(r["trigger"])}<br><small>{html.escape(r["subject"] or "")}</small></td>'
            f'<td>{html.escape(mask_id(r["customer_id"] or "-"))}<br><small>{html.escape(who)}</small></td>'
            f'<td>fired {_when(r["decided_at"])}<br>{r["state"]} {_when(done)}'
            f'<br>timer expiry &rarr; {r["state"]}: <span class="latency">{_seconds(done, r["ready_at"])}</span>'
            f'<br>fire &rarr; {r["state"]}: {_seconds(done, r["decided_at"])}<br>attempts: {r["attempts"]}</td>'
            f'<td>{body}</td></tr>')


def page(path: Path) -> str:
    rows = recent(path)
    s = stats(path)
    counts = " · ".join(f"{k}: {v}" for k, v in s["counts"].items())
    p95 = s["expiry_to_sent_p95_s"]
    table = "".join(_item(r) for r in rows) or '<tr><td colspan="5">No e-mails yet: the sender has not sent' \
                                                 ' or stopped any fire.</td></tr>'
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Outbox</title><style>{_STYLE}</style>"
            f"</head><body><h1>Outbox</h1><p id='counts'>{counts}</p>"
            f"<p>timer expiry &rarr; sent p95: {'' if p95 is None else f'{p95:.2f} s'} · file {html.escape(str(path))}</p>"
            "<table><tr><th>state</th><th>trigger</th><th>customer</th><th>timing</th><th>e-mail</th></tr>"
            f"{table}</table></body></html>")


def create_app(outbox_path: str | Path) -> Starlette:
    path = Path(outbox_path)

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page(path), headers={"Content-Security-Policy": "default-src 'none'; style-src "
                                                 "'unsafe-inline'; frame-src 'self'; img-src data:"})

    async def api(request: Request) -> JSONResponse:
        return JSONResponse(stats(path))

    return Starlette(routes=[Route("/", index), Route("/stats", api)])
