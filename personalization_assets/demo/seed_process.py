"""Seeding the demo's sources in a child process, so that its memory goes back to the system.

Generating the records is allocation-heavy (at scale 30: 60k customers, 108k orders and 858k
events as Python objects), and CPython keeps most of a freed heap in its arenas: seeded in the
demo's own process, about 1.8 GB stayed resident through the whole Dagster run. In a child, the
memory is returned when the child exits; the parent gets back the generated truth (without the
record lists, unless asked) and the lines to say, as they come.
"""

from __future__ import annotations

import multiprocessing
import resource
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Callable

from .generator import DemoData, InjectedEffect


@dataclass(frozen=True)
class Seeded:
    data: DemoData  # the record lists are empty unless `keep_records`
    injected: dict[str, int]
    pid: int  # the process that seeded
    peak_rss_mb: float  # that process's peak resident memory


def seed_in_child(data_dir: Path, *, crm_url: str, bus_url: str, seed: int, scale: float, now: datetime,
                  inject_bad: bool = False, keep_records: bool = False, effect: InjectedEffect | None = None,
                  say: Callable[[str], None] = lambda line: None) -> Seeded:
    """`seed_demo` (and, with `inject_bad`, `inject_bad_rows`) in a fresh ("spawn") process; its
    `say` lines are passed on as they come. A failure in the child is raised here."""
    context = multiprocessing.get_context("spawn")  # a fork would share the parent's heap pages
    receiver, sender = context.Pipe(duplex=False)
    kwargs = dict(data_dir=data_dir, crm_url=crm_url, bus_url=bus_url, seed=seed, scale=scale, now=now,
                  inject_bad=inject_bad, keep_records=keep_records, effect=effect)
    child = context.Process(target=_seed, args=(sender, kwargs), name="demo-seed", daemon=True)
    child.start()
    sender.close()  # the child holds the only writing end: EOF when it exits
    outcome: Seeded | BaseException | None = None
    try:
        while True:
            try:
                kind, value = receiver.recv()
            except EOFError:
                break
            if kind == "say":
                say(value)
            else:
                outcome = value
    finally:
        receiver.close()
        child.join()
    if isinstance(outcome, BaseException):
        raise outcome
    if outcome is None:
        raise RuntimeError(f"seeding the demo's sources stopped without a result (exit code {child.exitcode})")
    return outcome


def without_records(data: DemoData) -> DemoData:
    """The generated truth without its record lists: the sources hold the records now, and at
    scale 30 the lists are over 1 GB."""
    return replace(data, customers=[], orders=[], events=[])


def _seed(sender, kwargs: dict) -> None:
    import os

    from .seed import inject_bad_rows, seed_demo

    try:
        inject_bad, keep = kwargs.pop("inject_bad"), kwargs.pop("keep_records")
        data = seed_demo(**kwargs, keep_events=keep, say=lambda line: sender.send(("say", line)))
        injected = inject_bad_rows(kwargs["data_dir"], crm_url=kwargs["crm_url"], bus_url=kwargs["bus_url"],
                                   data=data, now=kwargs["now"]) if inject_bad else {}
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sender.send(("done", Seeded(data if keep else without_records(data), injected, os.getpid(), peak)))
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent, which raises it
        try:
            sender.send(("failed", exc))
        except Exception:  # an exception that does not pickle
            sender.send(("failed", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        sender.close()
