"""Normalization: every staging value in one documented canonical form, raw original kept beside it.

Pure functions over pandas Series, computed once per distinct value; they never raise on bad
data: a value that cannot be normalized is None/NA with a reason in the ``*_issue`` column.

Canonical forms:

| what | canonical form | function |
|---|---|---|
| text | NFKC, trimmed, inner whitespace collapsed, control and bidi-control characters dropped; None for empty | ``clean_text`` |
| matching key | clean text, case-folded | ``match_key`` |
| person's name | clean text, proper-cased when typed in one case ("O'Neil", "McDonald", "van der Berg") | ``display_name`` |
| email | email-validator normalized form, lower-case; ``email_key`` without provider aliases (Gmail dots/+tag, +tag at Outlook, iCloud, Fastmail, Proton); ``email_disposable``, ``email_role`` flags | ``normalize_emails`` |
| phone | E.164 ("+447911123456"), customer's country as default region | ``normalize_phones`` |
| timestamp | ``datetime64[ns, UTC]``; naive input read in a per-source zone; day/month order per source | ``parse_timestamps`` |
| time zone | IANA name as spelled by zoneinfo ("Europe/Berlin") | ``normalize_timezones`` |
| money | Int64 minor units of the ISO 4217 currency (EUR cents, JPY yen), half-even rounding | ``to_minor`` |
| reporting money | Int64 minor units of the reporting currency at the rate of the order's UTC date | ``convert`` / ``FxRates`` |
| consent flag | True/False from booleans, 0/1 and text (true/false, yes/no, y/n, t/f, on/off, 1/0, any case); missing is no consent; anything else None with a reason (never consent) | ``normalize_consent`` |
| country | ISO 3166-1 alpha-2, or None with a reason (explicit unknowns such as "Channel Islands") | ``normalize_countries`` |
| status, category, event name | canonical code from a versioned seed lookup | ``map_lookup`` / ``load_lookup`` |
| weight, length | grams, millimetres (Float64) | ``to_grams``, ``to_millimetres`` |

Seed tables live in ``normalize/seeds/`` (see SOURCE.md there).
"""

from .consent import normalize_consent
from .countries import normalize_countries
from .dates import normalize_timezones, parse_timestamps
from .email import normalize_emails
from .lookups import LOOKUPS, Lookup, load_lookup, map_lookup
from .money import FxRates, convert, minor_units, to_minor
from .phone import normalize_phones
from .text import clean_text, display_name, match_key
from .units import to_grams, to_millimetres

__all__ = [
    "LOOKUPS", "FxRates", "Lookup", "clean_text", "convert", "display_name", "load_lookup",
    "map_lookup", "match_key", "minor_units", "normalize_consent", "normalize_countries", "normalize_emails",
    "normalize_phones", "normalize_timezones", "parse_timestamps", "to_grams", "to_millimetres",
    "to_minor",
]
