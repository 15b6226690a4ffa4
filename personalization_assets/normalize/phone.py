"""Phone numbers in E.164 via ``phonenumbers``, with the customer's country as default region.

``phone`` is the E.164 form ("+447700900123") or None; ``phone_issue`` says why not:
``missing``, ``unparseable: <phonenumbers' reason>`` or ``not a valid number for region XX``.
Validity is ``phonenumbers.is_valid_number_for_region`` in the default region, else
``phonenumbers.is_valid_number`` in whatever region the number belongs to (a Canadian number of
a US customer is valid). Each distinct (raw, region) pair is parsed once.

Speed (each step does what phonenumbers does, only once per region; tests compare with it):
- validity in a region: the national number matches the region's general pattern and the pattern
  of a number type whose possible lengths include its length; the type patterns of each
  (region, length) are compiled into one regular expression, so one match replaces up to eleven;
- "+<digits>" input (spaces or hyphens allowed): the country code is the first of its 1-3 leading
  digits that is a calling code, the rest is the national number, unless the region's national
  prefix pattern matches it (then phonenumbers may strip a prefix, so it parses the number);
- national input (digits, spaces, dots, hyphens, parentheses) in a region whose national prefix has
  no transform rule or carrier code: the national prefix is stripped under phonenumbers' own
  conditions; input that starts with the international prefix or the country code is parsed.
Everything else goes through ``phonenumbers.parse``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any, NamedTuple

import pandas as pd
import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat

from ._unique import apply_unique_pairs, is_missing, to_frame

COLUMNS = ["phone", "phone_issue"]


def region_code(value: Any) -> str | None:
    """An ISO alpha-2 region phonenumbers knows, upper-cased, or None."""
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


@cache
def valid_in_region(region: str) -> Callable[[str], bool]:
    """nsn -> bool, equal to ``is_valid_number_for_region`` for a number of ``region``'s country code."""
    metadata = PhoneMetadata.metadata_for_region(region)
    kinds = [metadata.premium_rate, metadata.toll_free, metadata.shared_cost, metadata.voip,
             metadata.personal_number, metadata.pager, metadata.uan, metadata.voicemail, metadata.fixed_line]
    if not metadata.same_mobile_and_fixed_line_pattern:
        kinds.append(metadata.mobile)
    kinds = [d for d in kinds if d is not None and d.national_number_pattern]

    def fits(desc, length: int) -> bool:
        return not desc.possible_length or length in desc.possible_length

    general = metadata.general_desc
    by_length = {}
    for length in range(1, 18):
        patterns = [d.national_number_pattern for d in kinds if fits(d, length)]
        if patterns and general is not None and general.national_number_pattern and fits(general, length):
            by_length[length] = (re.compile(general.national_number_pattern),
                                 re.compile("|".join(f"(?:{p})" for p in patterns)))

    def check(nsn: str) -> bool:
        found = by_length.get(len(nsn))
        return found is not None and found[0].fullmatch(nsn) is not None and found[1].fullmatch(nsn) is not None

    return check


_INTERNATIONAL = re.compile(r"\+([1-9][0-9 -]*[0-9])\Z")


@cache
def _national_prefix(region: str) -> re.Pattern | None:
    pattern = PhoneMetadata.metadata_for_region(region).national_prefix_for_parsing
    return re.compile(pattern) if pattern else None


def _international(text: str, default: str | None) -> str | None:
    """E.164 of a valid "+<digits>" number, read without phonenumbers.parse; None: use the full path."""
    found = _INTERNATIONAL.match(text)
    if found is None:
        return None
    digits = found.group(1).replace(" ", "").replace("-", "")
    for size in (1, 2, 3):
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:size]))
        if regions:
            break
    else:
        return None
    nsn, main = digits[size:], regions[0]
    prefix = _national_prefix(main) if main != phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY else None
    if main == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY or not 2 <= len(nsn) <= 17 \
            or (prefix is not None and prefix.match(nsn)):
        return None
    # The region that decides validity: the default one when it shares the calling code, else the
    # only region of that code (several regions: phonenumbers picks one by leading digits).
    region = default if default in regions else main if len(regions) == 1 else None
    if region is None or not valid_in_region(region)(nsn):
        return None
    return f"+{digits[:size]}{nsn}"


_NATIONAL = re.compile(r"[0-9(][0-9 ().-]*[0-9]\Z")
_SEPARATORS = re.compile(r"[ ().-]")


class _NationalRules(NamedTuple):
    country_code: str
    international_prefix: re.Pattern | None
    national_prefix: re.Pattern | None
    general: re.Pattern | None
    lengths: tuple[int, ...]
    local_lengths: tuple[int, ...]


@cache
def _national_rules(region: str) -> _NationalRules | None:
    """The parts of ``region``'s metadata phonenumbers.parse uses on a national number, or None
    when its national prefix needs a transform rule or yields a carrier code (parse those)."""
    metadata = PhoneMetadata.metadata_for_region(region)
    prefix = re.compile(metadata.national_prefix_for_parsing) if metadata.national_prefix_for_parsing else None
    general = metadata.general_desc
    if metadata.national_prefix_transform_rule or (prefix is not None and prefix.groups) \
            or general is None or not general.possible_length:
        return None
    return _NationalRules(
        str(metadata.country_code),
        re.compile(metadata.international_prefix) if metadata.international_prefix else None, prefix,
        re.compile(general.national_number_pattern) if general.national_number_pattern else None,
        tuple(general.possible_length), tuple(general.possible_length_local_only or ()))


def _may_use_stripped(rules: _NationalRules, nsn: str) -> bool:
    """phonenumbers keeps a stripped national number unless its length is too short, local-only
    or not a possible length (``_test_number_length`` for an unknown type)."""
    size = len(nsn)
    if size in rules.local_lengths or size < rules.lengths[0]:
        return False
    return size == rules.lengths[0] or size > rules.lengths[-1] or size in rules.lengths[1:]


def _national(text: str, default: str | None) -> str | None:
    """E.164 of a valid national-format number, read without phonenumbers.parse; None: full path."""
    if default is None or not _NATIONAL.match(text):
        return None
    rules = _national_rules(default)
    digits = _SEPARATORS.sub("", text)
    if rules is None or len(digits) < 3 or digits.startswith(rules.country_code) \
            or (rules.international_prefix is not None and rules.international_prefix.match(digits)):
        return None
    nsn = digits
    found = rules.national_prefix.match(digits) if rules.national_prefix is not None else None
    if found:
        stripped = digits[found.end():]
        viable = rules.general is not None and rules.general.fullmatch(digits) is not None
        if not (viable and (rules.general is None or rules.general.fullmatch(stripped) is None)) \
                and _may_use_stripped(rules, stripped):
            nsn = stripped
    if not 2 <= len(nsn) <= 17 or not valid_in_region(default)(nsn):
        return None
    return f"+{rules.country_code}{nsn}"


def _valid(number: phonenumbers.PhoneNumber, default: str | None) -> bool:
    if default is not None and number.country_code == phonenumbers.country_code_for_region(default) \
            and valid_in_region(default)(phonenumbers.national_significant_number(number)):
        return True
    return phonenumbers.is_valid_number(number)


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return None


def normalize_one(raw: Any, region: Any) -> tuple[str | None, str | None]:
    if is_missing(raw):
        return None, "missing"
    text = _as_text(raw)
    if text is None:
        return None, "missing" if isinstance(raw, str) else f"unparseable: not a phone number ({type(raw).__name__})"
    default = region_code(region)
    fast = _international(text, default) if text.startswith("+") else _national(text, default)
    if fast is not None:
        return fast, None
    try:
        number = phonenumbers.parse(text, default)
    except NumberParseException as exc:
        return None, f"unparseable: {exc.args[0] if exc.args else exc}"
    if not _valid(number, default):
        where = phonenumbers.region_code_for_country_code(number.country_code)
        return None, f"not a valid number for region {where if where != 'ZZ' else default or 'unknown'}"
    return phonenumbers.format_number(number, PhoneNumberFormat.E164), None


def normalize_phones(raw: pd.Series, region: pd.Series) -> pd.DataFrame:
    """Columns ``phone, phone_issue`` aligned with ``raw``; ``region`` is the default ISO alpha-2."""
    region = region.reindex(raw.index) if not region.index.equals(raw.index) else region
    codes, results = apply_unique_pairs(raw, region, normalize_one)
    return to_frame(codes, results, dict.fromkeys(COLUMNS), raw.index)
