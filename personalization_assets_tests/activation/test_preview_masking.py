"""Previews (and check examples) of assets tagged `pii` are masked when Dagster writes them: an
erasure cannot edit stored metadata, so it must never hold an identifier."""

import json

import dagster as dg
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from personalization_assets.assets.common import frame_metadata
from personalization_assets.privacy import mask_frame

PEOPLE = pd.DataFrame({
    "customer_key": ["cus_4ad76ebb7af46057"], "email": ["Susan.Martin43@outlook.com"], "phone": ["+33612340436"],
    "first_name": ["Susan"], "user_id": ["1136"], "anonymous_id": ["6cad4a26-8d11-6ece-1738-f7d93d9c1724"],
    "payload": [json.dumps({"userId": "1136", "anonymousId": "6cad4a26-8d11-6ece-1738-f7d93d9c1724",
                            "traits": {"email": "susan.martin43@outlook.com", "phone": "+33 6 12 34 04 36"},
                            "timestamp": "2026-09-17T06:32:00Z"})],
    "orders": [3]})
IDENTIFIERS = ["cus_4ad76ebb7af46057", "susan.martin43@outlook.com", "+33612340436", "+33 6 12 34 04 36",
               "6cad4a26-8d11-6ece-1738-f7d93d9c1724", '"1136"']


def test_mask_frame_keeps_the_shape_but_no_identifier():
    text = mask_frame(PEOPLE).to_markdown().lower()
    assert not [i for i in IDENTIFIERS if i.lower() in text]
    shown = mask_frame(PEOPLE).iloc[0]
    assert shown["email"] == "S***@outlook.com" and shown["phone"] == "+*********36" and shown["orders"] == 3
    assert "2026-09-17T06:32:00Z" in shown["payload"]  # dates are not phone numbers


@settings(max_examples=200, deadline=None)
@given(local=st.from_regex(r"[a-z][a-z0-9._+-]{1,20}", fullmatch=True),
       domain=st.from_regex(r"[a-z][a-z0-9-]{1,10}\.(com|org|de|co\.uk)", fullmatch=True),
       digits=st.from_regex(r"[1-9][0-9]{7,13}", fullmatch=True))
def test_no_address_or_number_survives_in_free_text(local, domain, digits):
    email, phone = f"{local}@{domain}", f"+{digits}"
    frame = pd.DataFrame({"note": [f"from {email} (call {phone})"], "raw_payload": [json.dumps({"e": email, "p": phone})]})
    text = mask_frame(frame).to_string()
    assert email not in text and phone not in text


def _materialized(tags: dict) -> str:
    @dg.asset(key=["core", "people"], tags=tags)
    def people() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=frame_metadata(PEOPLE))

    result = dg.materialize([people])
    (event,) = result.get_asset_materialization_events()
    return event.materialization.metadata["preview"].value


def test_preview_of_a_pii_asset_is_masked_when_written_and_others_are_not():
    masked = _materialized({"pii": "true"}).lower()
    assert not [i for i in IDENTIFIERS if i.lower() in masked]
    assert "s***@outlook.com" in masked
    plain = _materialized({})
    assert "Susan.Martin43@outlook.com" in plain  # not personal data by its tags: shown as is
