"""Bulk source: provider export files (CSV or JSONL) dropped in a landing folder.

A file is identified by name + SHA-256 of its bytes: re-dropping the same file loads nothing, a
corrected file under the same name is loaded (its events dedup on provider_event_id anyway).
The provider is the file name's first word: `sendgrid_activity_2026-01.csv`, `mailgun-events.jsonl`,
`generic_export.jsonl`. CSV columns are the provider's JSON field names.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import orjson

from .model import Normalized, Rejected
from .normalize import PROVIDERS, normalize

SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class LandingFile:
    name: str
    path: Path
    checksum: str  # sha256 hex
    provider: str | None  # None: the name does not say which provider

    @property
    def key(self) -> str:
        return f"{self.name}@{self.checksum}"


def landing_dir() -> Path:
    from ..settings import data_dir

    return Path(os.environ.get("EMAIL_LANDING_DIR", data_dir() / "landing" / "email"))


def provider_of(name: str) -> str | None:
    word = re.split(r"[_\-.]", name, maxsplit=1)[0].lower()
    return word if word in PROVIDERS else None


def checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scan(folder: Path) -> list[LandingFile]:
    """Complete export files in the folder, by name (temporary `.part`/dot files are ignored)."""
    if not folder.is_dir():
        return []
    return [LandingFile(p.name, p, checksum(p), provider_of(p.name))
            for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")]


def _cell(value: str | None):
    if value is None or value == "":
        return None
    lowered = value.strip().lower()
    return {"true": True, "false": False}.get(lowered, value)


def _rows(f: LandingFile) -> Iterator[tuple[int, object]]:
    """(line number, parsed row or the reason it is not one), read a line at a time."""
    if f.path.suffix.lower() == ".csv":
        with f.path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
            for i, row in enumerate(csv.DictReader(handle)):
                yield i + 2, {k: _cell(v) for k, v in row.items() if k}
        return
    number = 0
    with f.path.open(encoding="utf-8-sig", errors="replace") as handle:
        for physical in handle:  # str.splitlines() of the line as read: the same lines as of the whole text
            for line in physical.splitlines():
                number += 1
                if line.strip():
                    yield number, _json_row(number, line)


def _json_row(number: int, line: str) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            return json.loads(line)  # what orjson refuses and json accepts (NaN, huge integers)
        except ValueError as exc:
            return ValueError(f"line {number} is not JSON: {exc}: {line[:200]}")


def load_file(f: LandingFile) -> tuple[list[Normalized], list[Rejected]]:
    """Normalize every row; a bad row is quarantined with its file and line, never dropped."""
    good, bad = [], []
    for g, b in iter_file(f):
        good += g
        bad += b
    return good, bad


def iter_file(f: LandingFile, chunk: int = 50_000) -> Iterator[tuple[list[Normalized], list[Rejected]]]:
    """`load_file` `chunk` rows at a time (a file of 450k events is never held whole); at least
    one (possibly empty) chunk."""
    if f.provider is None:
        yield [], [Rejected("unknown", f"file:{f.key}", "file.provider",
                            f"cannot tell the provider of {f.name!r}: start its name with one of "
                            f"{', '.join(PROVIDERS)}", json.dumps({"file": f.name, "checksum": f.checksum}))]
        return
    good, bad = [], []
    for line, row in _rows(f):
        if isinstance(row, ValueError):
            bad.append(Rejected(f.provider, f"file:{f.name}:{line}", "file.json", str(row),
                                json.dumps({"file": f.name, "line": line})))
        else:
            result = normalize(f.provider, row)
            (good if isinstance(result, Normalized) else bad).append(result)
        if len(good) + len(bad) >= chunk:
            yield good, bad
            good, bad = [], []
    yield good, bad


def erase(folder: Path, owns) -> dict[str, tuple[str, str, int]]:
    """Rewrite every export file without the rows `owns(row_text)` claims (GDPR erasure).

    Returns {file name: (old checksum, new checksum, rows removed)} for the files rewritten, so
    the caller can record the new checksum as loaded (the rewritten file holds nothing new). The
    new file replaces the old one atomically; its old bytes belong to no file afterwards."""
    changed = {}
    for f in scan(folder):
        raw = f.path.read_bytes()
        text = raw.decode("utf-8-sig", errors="replace")
        if f.path.suffix.lower() == ".csv":
            kept, removed = _csv_without(text, owns)
        else:
            lines = text.splitlines(keepends=True)
            kept_lines = [line for line in lines if not (line.strip() and owns(line))]
            kept, removed = "".join(kept_lines), len(lines) - len(kept_lines)
        if not removed:
            continue
        tmp = f.path.with_name("." + f.name + ".erasing")
        tmp.write_text(kept, encoding="utf-8")
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, f.path)
        changed[f.name] = (f.checksum, checksum(f.path), removed)
    return changed


def _csv_without(text: str, owns) -> tuple[str, int]:
    reader = csv.DictReader(io.StringIO(text))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [], lineterminator="\n")
    writer.writeheader()
    removed = 0
    for row in reader:
        if owns(json.dumps(row)):
            removed += 1
        else:
            writer.writerow(row)
    return out.getvalue(), removed


def holds(folder: Path, owns) -> int:
    """Rows of the export files that `owns` claims."""
    count = 0
    for f in scan(folder):
        text = f.path.read_bytes().decode("utf-8-sig", errors="replace")
        if f.path.suffix.lower() == ".csv":
            count += _csv_without(text, owns)[1]
        else:
            count += sum(1 for line in text.splitlines() if line.strip() and owns(line))
    return count
