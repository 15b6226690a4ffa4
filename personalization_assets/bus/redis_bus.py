"""Redis Streams bus, for deployments that run several collectors against one log.

Offsets: a stream id `<ms>-<seq>` maps to the int `ms << 20 | seq` (and back), so offsets grow
with stream order like the SQLite ones, but are not dense. `received_at` is the id's millisecond
time, i.e. the Redis server clock at append.

Dedup: one Lua script per append does, per event, GET dedup key -> else XADD + SET key EX window.
The script runs atomically, so a crash can never leave a dedup key without its entry (which
would lose the event on the client's retry).

Durability: an append returns once Redis has applied it; it survives a Redis crash only as far as
the server's persistence allows. Run Redis with `appendonly yes` and `appendfsync always` for the
guarantee the SQLite bus gives with synchronous=FULL (`everysec` may lose up to ~1 s on a crash);
`durability()` reports the server's setting.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Sequence

import orjson
import redis

from .base import DEFAULT_DEDUP_WINDOW_S, Appended, BusRecord, message_id_of

_SEQ_BITS = 20
_CHUNK = 1000

_APPEND_LUA = """
local out = {}
local n = (#ARGV - 2) / 2
for i = 0, n - 1 do
  local mid = ARGV[3 + i * 2]
  local dk = ARGV[2] .. mid
  local existing = redis.call('GET', dk)
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 1
  else
    local id = redis.call('XADD', KEYS[1], '*', 'm', mid, 'p', ARGV[4 + i * 2])
    redis.call('SET', dk, id, 'EX', ARGV[1])
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
return out
"""


# XDEL only flags an entry as deleted inside its listpack node: its bytes stay in memory and in
# RDB/AOF rewrites until every entry of the node is gone. Erasure therefore rebuilds the stream:
# same ids, the groups at the same positions, their pending entries re-created (delivery counts
# and idle times restart), then renamed over the old key; atomic, as one script.
_REBUILD_LUA = """
local src, tmp = KEYS[1], KEYS[2]
redis.call('DEL', tmp)
local info = redis.call('XINFO', 'STREAM', src)
local last_id, added, max_deleted
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last_id = info[i + 1] end
  if info[i] == 'entries-added' then added = info[i + 1] end
  if info[i] == 'max-deleted-entry-id' then max_deleted = info[i + 1] end
end
local start = '-'
while true do
  local batch = redis.call('XRANGE', src, start, '+', 'COUNT', 1000)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    local args = {'XADD', tmp, entry[1]}
    for _, v in ipairs(entry[2]) do args[#args + 1] = v end
    redis.call(unpack(args))
  end
  start = '(' .. batch[#batch][1]
end
if redis.call('EXISTS', tmp) == 0 then  -- every entry was erased: an empty stream keeps the groups
  redis.call('XGROUP', 'CREATE', tmp, 'erasure-rebuild', '0', 'MKSTREAM')
  redis.call('XGROUP', 'DESTROY', tmp, 'erasure-rebuild')
end
redis.call('XSETID', tmp, last_id, 'ENTRIESADDED', added, 'MAXDELETEDID', max_deleted)
for _, group in ipairs(redis.call('XINFO', 'GROUPS', src)) do
  local g = {}
  for i = 1, #group, 2 do g[group[i]] = group[i + 1] end
  if g['entries-read'] then
    redis.call('XGROUP', 'CREATE', tmp, g['name'], g['last-delivered-id'], 'ENTRIESREAD', g['entries-read'])
  else
    redis.call('XGROUP', 'CREATE', tmp, g['name'], g['last-delivered-id'])
  end
  for _, p in ipairs(redis.call('XPENDING', src, g['name'], '-', '+', 1000000000)) do
    redis.call('XCLAIM', tmp, g['name'], p[2], 0, p[1], 'FORCE', 'JUSTID')
  end
end
redis.call('RENAME', tmp, src)
return 1
"""

def id_to_offset(stream_id: bytes | str) -> int:
    s = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, seq = s.split("-")
    if int(seq) >= 1 << _SEQ_BITS:
        raise ValueError(f"stream id {s} has a sequence beyond {1 << _SEQ_BITS}; cannot map to offset")
    return (int(ms) << _SEQ_BITS) | int(seq)


def offset_to_id(offset: int) -> str:
    return f"{offset >> _SEQ_BITS}-{offset & ((1 << _SEQ_BITS) - 1)}"


class RedisBus:
    def __init__(
        self, url: str, stream: str = "events", dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S
    ) -> None:
        self.stream = stream
        self.dedup_window_s = max(1, int(dedup_window_s))
        self._r = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
        self._append = self._r.register_script(_APPEND_LUA)
        self._rebuild = self._r.register_script(_REBUILD_LUA)
        self._dedup_prefix = f"{stream}:dedup:"
        self._groups: set[str] = set()

    def append(self, events: Sequence[dict]) -> list[int]:
        return [a.offset for a in self.append_detailed(events)]

    def append_detailed(self, events: Sequence[dict]) -> list[Appended]:
        out: list[Appended] = []
        for k in range(0, len(events), _CHUNK):
            args: list = [self.dedup_window_s, self._dedup_prefix]
            for ev in events[k : k + _CHUNK]:
                mid = message_id_of(ev)
                if ev.get("messageId") != mid:
                    ev = {**ev, "messageId": mid}
                args += [mid, orjson.dumps(ev)]
            flat = self._append(keys=[self.stream], args=args)
            out += [Appended(id_to_offset(flat[i]), bool(flat[i + 1])) for i in range(0, len(flat), 2)]
        return out

    @staticmethod
    def _record(entry_id: bytes, fields: dict) -> BusRecord:
        off = id_to_offset(entry_id)
        received = datetime.fromtimestamp((off >> _SEQ_BITS) / 1000.0, tz=timezone.utc)
        return BusRecord(off, fields[b"m"].decode(), received, orjson.loads(fields[b"p"]))

    def read(self, after_offset: int, limit: int = 1000) -> list[BusRecord]:
        start = "-" if after_offset <= 0 else f"({offset_to_id(after_offset)}"
        entries = self._r.xrange(self.stream, min=start, max="+", count=limit)
        return [self._record(i, f) for i, f in entries]

    def _ensure_group(self, group: str) -> None:
        if group in self._groups:
            return
        try:
            self._r.xgroup_create(self.stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(group)

    def read_group(
        self, group: str, consumer: str, limit: int = 1000, block_ms: int = 0
    ) -> list[BusRecord]:
        """This consumer's unacknowledged entries first (redelivery after a crash), then new ones."""
        self._ensure_group(group)
        pending = self._r.xreadgroup(group, consumer, {self.stream: "0"}, count=limit)
        entries = [(i, f) for i, f in (pending[0][1] if pending else []) if f]
        if not entries:
            fresh = self._r.xreadgroup(
                group, consumer, {self.stream: ">"}, count=limit, block=block_ms or None
            )
            entries = fresh[0][1] if fresh else []
        return [self._record(i, f) for i, f in entries]

    def ack(self, group: str, offsets: Sequence[int]) -> None:
        if offsets:
            self._r.xack(self.stream, group, *[offset_to_id(o) for o in offsets])

    def last_offset(self) -> int:
        last = self._r.xrevrange(self.stream, max="+", min="-", count=1)
        return id_to_offset(last[0][0]) if last else 0

    def count(self) -> int:
        return int(self._r.xlen(self.stream))

    def durability(self) -> str:
        try:
            aof = self._r.config_get("appendonly").get("appendonly")
            fsync = self._r.config_get("appendfsync").get("appendfsync")
        except redis.ResponseError:
            return "unknown (CONFIG not permitted)"
        return f"appendonly={aof} appendfsync={fsync}"

    def erase(self, match: Callable[[bytes], bool], needles: Sequence[str] = ()) -> int:
        """Remove every entry whose payload `match`es (GDPR erasure); returns how many. `needles`
        (lower-case substrings) skip the JSON parse of entries that cannot match. XDEL, then the
        stream is rebuilt (`_REBUILD_LUA`) so the bytes leave memory and the next RDB snapshot;
        an append-only file keeps the old commands until its next rewrite (BGREWRITEAOF)."""
        ids = [entry_id for entry_id, payload in self._scan() if self._hit(payload, match, needles)]
        for k in range(0, len(ids), _CHUNK):
            self._r.xdel(self.stream, *ids[k : k + _CHUNK])
        if ids:
            self._rebuild(keys=[self.stream, f"{self.stream}:erasure-rebuild"])
        return len(ids)

    def remaining(self, match: Callable[[bytes], bool], needles: Sequence[str] = ()) -> int:
        return sum(1 for _, payload in self._scan() if self._hit(payload, match, needles))

    @staticmethod
    def _hit(payload: bytes, match: Callable[[bytes], bool], needles: Sequence[str]) -> bool:
        if needles:
            low = payload.decode("utf-8", "replace").lower()
            if not any(n in low for n in needles):
                return False
        return match(payload)

    def _scan(self):
        start = "-"
        while entries := self._r.xrange(self.stream, min=start, max="+", count=_CHUNK):
            for entry_id, fields in entries:
                yield entry_id, fields[b"p"]
            start = "(" + (entries[-1][0].decode() if isinstance(entries[-1][0], bytes) else entries[-1][0])

    def drop(self) -> None:
        """Delete the stream and its dedup keys (tests and benchmarks only)."""
        self._r.delete(self.stream)
        for key in self._r.scan_iter(match=f"{self._dedup_prefix}*", count=1000):
            self._r.delete(key)

    def close(self) -> None:
        self._r.close()

    def __enter__(self) -> "RedisBus":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisBus(stream={self.stream!r})"

