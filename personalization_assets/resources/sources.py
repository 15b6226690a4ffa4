"""Resources for the source systems: thin configuration around the clients in `sources/`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime

import dagster as dg
import pandas as pd

from ..sources.crm import extract_customers
from ..sources.orders_api import OrdersApiClient


class CrmDatabase(dg.ConfigurableResource):
    """The CRM database, reached through a SQLAlchemy URL (SQLite in the demo, PostgreSQL in tests)."""

    url: str

    def extract_customers(self, read_from: datetime | None) -> pd.DataFrame:
        return extract_customers(self.url, read_from)


class OrdersApi(dg.ConfigurableResource):
    """The shop's orders REST API. With no `base_url`, the demo API is served in-process."""

    base_url: str = ""
    client_id: str
    client_secret: str
    catalogue_dir: str = ""
    timeout_seconds: float = 10.0
    max_attempts: int = 6
    page_size: int = 200

    @contextlib.contextmanager
    def client(self) -> Iterator[OrdersApiClient]:
        if self.base_url:
            yield OrdersApiClient(self.base_url, self.client_id, self.client_secret,
                                  timeout=self.timeout_seconds, max_attempts=self.max_attempts,
                                  page_size=self.page_size)
            return
        from ..demo.orders_api_server import ApiBehaviour, OrdersApiServer

        behaviour = ApiBehaviour(client_id=self.client_id, client_secret=self.client_secret,
                                 rate_limit_every=25)
        with OrdersApiServer(self.catalogue_dir, behaviour) as server:
            yield OrdersApiClient(server.url, self.client_id, self.client_secret,
                                  timeout=self.timeout_seconds)


class EventBusResource(dg.ConfigurableResource):
    """The durable event bus the collector appends to (`sqlite:///...` or `redis://...`)."""

    url: str

    def open(self):
        from ..bus import open_bus

        return open_bus(self.url)
