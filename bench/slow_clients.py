"""Half-open connections against a collector with the default settings: how many it holds, and for
how long (issue 18: 2,000 were held forever).

    python -m bench.slow_clients [--connections 2000]

Each client connects and sends the start of a request whose headers never end. With the defaults
(max_connections 1,000 per worker, header_timeout_s 10) the collector should refuse those beyond
the cap at once and close the rest about 10 s after they connected.
"""

from __future__ import annotations

import argparse
import resource
import socket
import tempfile
import threading
import time

from personalization_assets.collector import CollectorSettings
from personalization_assets.collector.server import bind, build_server


def still_open(socks: list[socket.socket]) -> int:
    n = 0
    for s in socks:
        if s.fileno() < 0:
            continue
        try:
            if s.recv(1) == b"":
                s.close()
                continue
        except BlockingIOError:
            n += 1
        except OSError:
            s.close()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.connections + 100)), hard))
    settings = CollectorSettings(bus_url=f"sqlite:///{tempfile.mkdtemp(prefix='bench-slow-')}/events.db")
    public, admin = bind("127.0.0.1", 0), bind("127.0.0.1", 0)
    server = build_server(settings, public, admin)
    threading.Thread(target=server.run, kwargs={"sockets": server.collector_sockets}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    port = public.getsockname()[1]
    t0 = time.monotonic()
    socks = []
    for _ in range(args.connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n")  # the headers never end
        s.setblocking(False)
        socks.append(s)
    print(f"{args.connections} half-open connections opened in {time.monotonic() - t0:.1f} s "
          f"(max_connections {settings.max_connections}, header_timeout_s {settings.header_timeout_s:g})")
    for at in (1, 5, settings.header_timeout_s - 1, settings.header_timeout_s + 2):
        time.sleep(max(0.0, at - (time.monotonic() - t0)))
        print(f"  t = {time.monotonic() - t0:5.1f} s: {still_open(socks):5} still open")
    server.should_exit = True


if __name__ == "__main__":
    main()
