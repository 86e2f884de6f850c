"""Webhook flood: oversized bodies, then 2,000 signed deliveries per vendor from 32 senders each, at once.

Starts the receiver (`sync-pipelines webhooks`) in its own process on a free loopback port with a fresh inbox.
First it posts an oversized body twice, with a declared Content-Length and chunked, each sent until a response
comes back, and prints what came back, how much had been sent by then and the receiver's peak RSS before and
after. Then it floods the Xero and Intercom routes together and prints, per vendor, the count of each status
code, p50/p99 acknowledgement latency, acks slower than the vendors' 5 s (xero.md §6, intercom.md §9) and how
many events the inbox holds; and the tracebacks in the receiver's log.

    python benchmarks/webhook_flood.py [--deliveries 2000] [--senders 32] [--oversized-mib 64]
"""

import argparse
import json
import math
import os
import select
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import requests

from sync_pipelines.sandbox.intercom.webhooks import signature
from sync_pipelines.vendors.intercom.webhooks import WEBHOOKS as INTERCOM
from sync_pipelines.vendors.xero.webhooks import WEBHOOKS as XERO
from sync_pipelines.vendors.xero.webhooks import sign
from sync_pipelines_tests.webhooks.conftest import (
    INTERCOM_SECRET,
    KEY,
    delivery_body,
    intercom_notification,
    xero_event,
)

ACK_SECONDS = 5  # xero.md §6, intercom.md §9: the vendor gives up on a delivery not acknowledged by then
CHUNK = b"x" * 65_536


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _peak_rss_mib(pid: int) -> float:
    """The process's high-water resident set (VmHWM), which no later release of memory lowers."""
    status = Path(f"/proc/{pid}/status").read_text()
    (kib,) = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(kib) / 1024


def _percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _xero_delivery() -> tuple[bytes, dict[str, str]]:
    body = delivery_body([xero_event("INVOICE", "UPDATE")])
    return body, {"Content-Type": "application/json", "x-xero-signature": sign(KEY, body)}


def _intercom_delivery() -> tuple[bytes, dict[str, str]]:
    body = json.dumps(intercom_notification("contact.user.updated")).encode()
    return body, {"Content-Type": "application/json", "X-Hub-Signature": signature(INTERCOM_SECRET, body)}


def _send(url: str, deliveries: list[tuple[bytes, dict[str, str]]]) -> list[tuple[int | str, float]]:
    """One sender: its deliveries in turn on one kept-alive session; (status or error, seconds) for each."""
    results = []
    with requests.Session() as session:
        for body, headers in deliveries:
            started = time.perf_counter()
            try:
                status: int | str = session.post(url, data=body, headers=headers, timeout=30).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            results.append((status, time.perf_counter() - started))
    return results


def _flood(routes: dict[str, tuple[str, list]], senders: int) -> dict[str, list[tuple[int | str, float]]]:
    """Every route's deliveries, each route's shared among its own `senders` threads, all routes at once."""
    shares = [(name, url, deliveries[i::senders]) for name, (url, deliveries) in routes.items() for i in range(senders)]
    with ThreadPoolExecutor(len(shares)) as pool:
        outcomes = list(pool.map(lambda share: (share[0], _send(share[1], share[2])), shares))
    return {name: [result for sender, results in outcomes if sender == name for result in results] for name in routes}


def _oversized(url: str, size: int, chunked: bool) -> tuple[str, int]:
    """POST a `size`-byte body, sending until the whole of it is gone or a response arrives first.

    Returns the response's status line and how many body bytes had been sent when it came back.
    """
    parts = urlsplit(url)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        try:
            sock.sendall(head.encode())
            while sent < size and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK)
                sent += len(CHUNK)
            if chunked and sent >= size:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed the connection under the sender; its response may still be readable
            pass
        try:
            reply = sock.recv(4096)
        except OSError as exc:  # reset: the response went with the connection
            return type(exc).__name__, sent
    return (reply.split(b"\r\n", 1)[0].decode() or "connection closed"), sent


def _stored(inbox: Path) -> Counter:
    with sqlite3.connect(inbox) as conn:
        rows = conn.execute("SELECT source, count(*) FROM webhook_events GROUP BY source").fetchall()
    conn.close()
    return Counter(dict(rows))


def _measure(work: Path, args: argparse.Namespace) -> list[tuple[str, object]]:
    """Runs the receiver in `work` through the oversized bodies and the flood: (figure, value) rows."""
    inbox, log_path, port = work / "webhook_inbox.sqlite", work / "receiver.log", _free_port()
    env = {**os.environ, "XERO_WEBHOOK_KEY": KEY, "INTERCOM_CLIENT_SECRET": INTERCOM_SECRET}
    command = [sys.executable, "-m", "sync_pipelines.cli", "webhooks", "--port", str(port), "--inbox", str(inbox)]
    base = f"http://127.0.0.1:{port}"
    routes = {
        "xero": (base + XERO.path, [_xero_delivery() for _ in range(args.deliveries)]),
        "intercom": (base + INTERCOM.path, [_intercom_delivery() for _ in range(args.deliveries)]),
    }
    rows: list[tuple[str, object]] = []
    with log_path.open("wb") as log:
        receiver = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:  # up once its routes answer: GET is 405
                try:
                    requests.get(base + XERO.path, timeout=1)
                    break
                except requests.ConnectionError:
                    if receiver.poll() is not None:
                        raise SystemExit(f"the receiver exited:\n{log_path.read_text()}") from None
                    time.sleep(0.1)
            peak = _peak_rss_mib(receiver.pid)
            rows.append(("receiver peak RSS, idle", f"{peak:.0f} MiB"))
            size = args.oversized_mib * 1024 * 1024
            for chunked in (False, True):
                reply, sent = _oversized(base + XERO.path, size, chunked)
                before, peak = peak, _peak_rss_mib(receiver.pid)
                framing = "chunked" if chunked else "Content-Length"
                rows.append((f"{args.oversized_mib} MiB body ({framing}): reply, MiB sent by then",
                             f"{reply}, {sent / 2**20:.1f} of {args.oversized_mib}"))  # fmt: skip
                rows.append((f"{args.oversized_mib} MiB body ({framing}): receiver peak RSS before -> after",
                             f"{before:.0f} -> {peak:.0f} MiB"))  # fmt: skip
            started = time.perf_counter()
            results = _flood(routes, args.senders)
            seconds = time.perf_counter() - started
            rows.append(("receiver peak RSS after the flood", f"{_peak_rss_mib(receiver.pid):.0f} MiB"))
        finally:
            receiver.terminate()
            receiver.wait(timeout=30)

    stored = _stored(inbox)
    total = sum(len(vendor_results) for vendor_results in results.values())
    rows.append(("flood", f"{total} deliveries from {2 * args.senders} senders in {seconds:.1f} s "
                          f"({total / seconds:.0f}/s)"))  # fmt: skip
    for name, vendor_results in results.items():
        statuses = Counter(status for status, _ in vendor_results)
        latencies = [elapsed for _, elapsed in vendor_results]
        late = sum(elapsed > ACK_SECONDS for elapsed in latencies)
        rows.append(
            (f"{name}: status codes", ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items(), key=str)))
        )
        rows.append((f"{name}: ack latency p50 / p99 / max",
                     f"{_percentile(latencies, 0.5) * 1000:.0f} / {_percentile(latencies, 0.99) * 1000:.0f} / "
                     f"{max(latencies) * 1000:.0f} ms ({late} over {ACK_SECONDS} s)"))  # fmt: skip
        rows.append((f"{name}: events in the inbox", f"{stored[name]} of {args.deliveries}"))
    log_text = log_path.read_text(errors="replace")
    rows.append(("receiver log: tracebacks, 'database is locked'",
                 f"{log_text.count('Traceback')}, {log_text.count('database is locked')}"))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=2000, help="per vendor")
    parser.add_argument("--senders", type=int, default=32, help="per vendor")
    parser.add_argument("--oversized-mib", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="webhook_flood_") as work:
        rows = _measure(Path(work), args)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
