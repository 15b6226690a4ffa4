"""Appends webhook events to the e-mail events bus (and refused-but-signed ones to its quarantine)."""

from __future__ import annotations

import threading
from typing import Sequence

from ..bus import Appended, open_bus, open_quarantine_bus
from ..email_events.bus import bus_event, email_events_bus_url, quarantine_event
from ..email_events.model import Normalized, Rejected


class EmailEventStore:
    """Opens its buses on first use: the app is built at import of the collector, the files later."""

    def __init__(self, bus_url: str | None = None, bus=None):
        self.bus_url = bus_url
        self._bus, self._quarantine = bus, None
        self._owns_bus = bus is None  # never close the collector's bus
        self._lock = threading.Lock()

    def _open(self):
        with self._lock:
            if self._quarantine is None:
                url = self.bus_url or email_events_bus_url()
                if self._bus is None:
                    self._bus = open_bus(url)
                self._quarantine = open_quarantine_bus(url)
        return self._bus, self._quarantine

    def append(self, events: Sequence[Normalized], rejected: Sequence[Rejected]) -> list[Appended]:
        bus, quarantine = self._open()
        if rejected:
            quarantine.append([quarantine_event(r) for r in rejected])
        return bus.append_detailed([bus_event(e) for e in events]) if events else []

    def close(self) -> None:
        with self._lock:
            if self._quarantine is not None:
                self._quarantine.close()
            if self._owns_bus and self._bus is not None:
                self._bus.close()
                self._bus = None
            self._quarantine = None
