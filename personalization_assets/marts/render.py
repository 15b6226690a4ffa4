"""Render the shipped example e-mail template with a customer's payload (template previews)."""

from __future__ import annotations

import json
from functools import lru_cache

import jinja2
import pandas as pd

from ..privacy import mask_id, mask_text

TEMPLATE = "campaign_email"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # StrictUndefined: a merge field missing from the payload is an error, not a blank in an e-mail.
    return jinja2.Environment(loader=jinja2.PackageLoader("personalization_assets", "templates"),
                              autoescape=jinja2.select_autoescape(["html.j2"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(payload: dict, subject: str = "Picked for you",
           unsubscribe_url: str = "https://example.com/unsubscribe") -> dict[str, str]:
    """{"html": ..., "text": ...} for one payload."""
    context = {**payload, "subject": subject, "unsubscribe_url": unsubscribe_url}
    env = _environment()
    return {kind: env.get_template(f"{TEMPLATE}.{kind}.j2").render(context) for kind in ("html", "txt")}


def preview_markdown(payloads: pd.DataFrame, samples: int = 3) -> str:
    """The text version for a few customers, as Markdown for the materialization metadata.

    Prefers customers with a cart, then with recommendations, so the preview shows the branches.
    """
    if payloads.empty:
        return "_no sendable customers_"
    docs = payloads.assign(doc=payloads["payload"].map(json.loads))
    order = docs["doc"].map(lambda d: (not d["cart"], not d["recommendations"]))
    chosen = docs.loc[order.sort_values(kind="stable").index].head(samples)
    parts = [f"**{mask_id(row.customer_key)}** ({row.locale}, {row.loyalty_tier})\n\n```\n{render(row.doc)['txt'].strip()}\n```"
             for row in chosen.itertuples(index=False)]
    return mask_text("\n\n".join(parts))  # kept in Dagster's metadata for good: no identifiers
