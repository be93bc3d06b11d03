"""Gateway chain under a real server: requests per second, uvicorn + wrk on loopback (issue 6).

    python benchmarks/gateway_http.py [--quick] [--layers] [--load auto|wrk|python] [--out PATH]

The same Starlette app as the in-process gateway benchmark (one route, a small JSON answer;
see `_gateway_apps`) served by uvicorn in a process of its own (one worker, no access log,
uvloop and httptools when installed, identical settings for all; see `_gateway_http_apps`):

- bare Starlette;
- ours: full chain (observability with request ids and metrics, JWT authentication with its
  token cache, memory rate limit per tier and per IP at 100000000/hour so nothing is denied,
  RBAC over the route's rule), in the app's middleware list;
- ours: the same chain built by ``Gateway(...).wrap`` around the app;
- slowapi's pure-ASGI ``SlowAPIASGIMiddleware`` (100000000/hour per client address);
- for reference (not with ``--layers``), the floor: the chain's work hand-inlined in one
  function with none of its features (`_gateway_floor`), the least Python can do here;
- with ``--layers``, each of our layers alone on the app (observability, JWT
  authentication, rate limit, RBAC): where the chain's cost goes.

Each server is started once on 127.0.0.1 (a port the OS picks) and checked (a 200 with the
token; for ours and the floor, a request id on the answer and a 401 for a forged token). Then
``wrk -t1 -c16 -d10s`` with ``Authorization: Bearer <token>`` runs against each in turn
(each of our servers has its own key and is sent a token it minted, the others the chain's:
the requests differ only in the signature's bytes), after a 2 s warm-up,
3 rounds with the order rotating; medians. A run with any non-2xx answer or socket error
fails.

Rows keep the house convention (ratio = peer / ours, above 1 we are faster) by stating time
per request, 1e6 / (requests per second): so the row "ours: full chain" against "bare
Starlette" has ratio = chain req/s / bare req/s, the share of bare throughput the chain
keeps. Requests per second are printed beside. Prints MET / NOT MET for the issue's ">= 70%
of bare Starlette's requests per second" and writes ``benchmarks/results/gateway_http.json``.
About 3 minutes on 2 cores (4.5 with ``--layers``, which leaves the floor out).

wrk is required for a real run (Debian/Ubuntu: ``apt-get install -y wrk``). ``--quick``
(1 s runs, one round) falls back to a small Python load generator (httpx, 16 concurrent
connections) when wrk is missing, so the smoke test always runs; its figures measure the
generator more than the server and mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks._gateway_apps import FLOOR
from benchmarks._harness import (
    Row,
    Runner,
    Target,
    interleave,
    print_rows,
    print_targets,
    row,
    write_rows,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "gateway_http.json"
PATH = "/api/v1/products/42"
BARE = "bare Starlette"
CHAIN = "ours: full chain"
WRAP = "ours: full chain built by Gateway(...).wrap"
SLOWAPI = "slowapi (SlowAPIASGIMiddleware)"
CONTENDERS = (BARE, CHAIN, WRAP, SLOWAPI, FLOOR)
OURS = (CHAIN, WRAP)
#: ``--layers``: each of our layers alone on the bare app (where the chain's cost goes).
LAYER = "ours layer: "
LAYERS = tuple(
    LAYER + name for name in ("observability", "JWT authentication", "rate limit", "RBAC")
)
#: Servers that verify tokens, each with its own key, so each is sent a token it minted.
VERIFYING = (*OURS, FLOOR, LAYER + "JWT authentication")
#: The issue's target: the chain keeps at least this share of bare Starlette's req/s.
KEEP = 0.70
INSTALL_WRK = "wrk is required for a full run: apt-get install -y wrk (Debian/Ubuntu)"
START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Scale:
    """How long each load run lasts and how many rounds are taken."""

    seconds: int  # each timed run
    warmup: int  # the untimed run before the first round
    rounds: int
    connections: int = 16


FULL = Scale(seconds=10, warmup=2, rounds=3)
QUICK = Scale(seconds=1, warmup=1, rounds=1)


@dataclass(frozen=True, slots=True)
class Result:
    """One load run: requests answered, how many were not 2xx/3xx, errors, seconds."""

    requests: int
    bad: int
    errors: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


class Server:
    """One contender served by uvicorn in its own process (`_gateway_http_apps`).

    The child serves until its standard input closes, so it stops with this object, and
    with this process if it dies; it also has a lifetime of its own.
    """

    def __init__(self, case: str) -> None:
        self.case = case
        self.port, self.token, self.loop, self.http = 0, "", "", ""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._gateway_http_apps", case],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def wait_ready(self) -> None:
        """Read the child's announcement: it is listening once it has printed it."""
        stdout = self._proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], START_TIMEOUT_S)
        line = stdout.readline() if ready else b""
        if not line:
            raise RuntimeError(f"{self.case}: the server did not start (exit {self._proc.poll()})")
        hello: dict[str, Any] = json.loads(line)
        self.port, self.token = hello["port"], hello["token"]
        self.loop, self.http = hello["loop"], hello["http"]

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used so far (Linux), or None."""
        try:
            with open(f"/proc/{self._proc.pid}/stat", encoding="ascii") as stat:
                # Fields after the command (which may hold spaces): utime and stime are
                # the 12th and 13th.
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        """Ask the server to stop (close its stdin), then make sure it has."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def check(server: Server, token: str) -> None:
    """The server answers 200 to the benchmark's request; ours also shows it is the chain."""
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(timeout=10) as client:
        ok = client.get(server.url, headers=headers)
        if ok.status_code != 200:
            raise RuntimeError(f"{server.case}: answered {ok.status_code}, expected 200")
        if server.case in (*OURS, FLOOR):
            if "x-request-id" not in ok.headers:
                raise RuntimeError(f"{server.case}: no request id: not the full chain")
            # One signature character changed, still valid base64url: a bad signature.
            flipped = "A" if token[-10] != "A" else "B"
            bad = f"Bearer {token[:-10]}{flipped}{token[-9:]}"
            forged = client.get(server.url, headers={"authorization": bad})
            if forged.status_code != 401:
                raise RuntimeError(f"{server.case}: a forged token got {forged.status_code}")


class Wrk:
    """wrk, one thread, ``connections`` keep-alive connections."""

    def __init__(self, connections: int) -> None:
        self.connections = connections

    def label(self, seconds: int) -> str:
        return f"wrk -t1 -c{self.connections} -d{seconds}s"

    def run(self, url: str, token: str, seconds: int) -> Result:
        done = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{self.connections}",
                f"-d{seconds}s",
                "--timeout",
                "5s",
                "-H",
                f"Authorization: Bearer {token}",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
        return parse_wrk(done.stdout)


def parse_wrk(text: str) -> Result:
    """Requests, non-2xx/3xx answers, socket errors and duration from wrk's report."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    if total is None:
        raise RuntimeError(f"unreadable wrk output:\n{text}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[total.group(3)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return Result(
        requests=int(total.group(1)),
        bad=int(bad.group(1)) if bad else 0,
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
        seconds=float(total.group(2)) * scale,
    )


class PythonLoad:
    """The fallback generator: httpx, ``connections`` tasks each sending one request at a
    time. It is slower than the servers it drives, so its figures only show the path runs."""

    def __init__(self, connections: int) -> None:
        self.connections = connections

    def label(self, seconds: int) -> str:
        return f"python load (httpx) -c{self.connections} -d{seconds}s"

    def run(self, url: str, token: str, seconds: int) -> Result:
        return asyncio.run(self._run(url, token, seconds))

    async def _run(self, url: str, token: str, seconds: int) -> Result:
        limits = httpx.Limits(
            max_connections=self.connections, max_keepalive_connections=self.connections
        )
        headers = {"authorization": f"Bearer {token}"}
        counts = {"requests": 0, "bad": 0, "errors": 0}
        async with httpx.AsyncClient(limits=limits, headers=headers, timeout=5) as client:
            start = time.perf_counter()
            deadline = start + seconds

            async def worker() -> None:
                while time.perf_counter() < deadline:
                    try:
                        answer = await client.get(url)
                    except httpx.HTTPError:
                        counts["errors"] += 1
                        continue
                    counts["requests"] += 1
                    counts["bad"] += not 200 <= answer.status_code < 400

            await asyncio.gather(*(worker() for _ in range(self.connections)))
            elapsed = time.perf_counter() - start
        return Result(counts["requests"], counts["bad"], counts["errors"], elapsed)


Load = Wrk | PythonLoad


def choose_load(name: str, quick: bool, connections: int) -> Load:
    """wrk when asked for or found; the Python generator only when asked for, or in a quick
    run without wrk. A full run without wrk is an error telling how to install it."""
    has_wrk = shutil.which("wrk") is not None
    if name == "python" or (name == "auto" and quick and not has_wrk):
        return PythonLoad(connections)
    if not has_wrk:
        raise SystemExit(INSTALL_WRK)
    return Wrk(connections)


def runner(load: Load, server: Server, token: str, scale: Scale, cpu: list[float]) -> Runner:
    """Microseconds per request (1e6 / req/s) of one load run; the warm-up (repeat -1) is
    shorter. The server's CPU microseconds per request of each timed run go to ``cpu``.
    Any non-2xx/3xx answer or socket error fails the run."""

    def run(repeat: int) -> float:
        seconds = scale.warmup if repeat < 0 else scale.seconds
        before = server.cpu_seconds()
        result = load.run(server.url, token, seconds)
        after = server.cpu_seconds()
        if result.requests == 0 or result.bad or result.errors:
            raise RuntimeError(
                f"{server.case}: {result.requests} requests, {result.bad} not 2xx/3xx, "
                f"{result.errors} socket errors"
            )
        if repeat >= 0 and before is not None and after is not None:
            cpu.append((after - before) * 1e6 / result.requests)
        return 1e6 / result.rps

    return run


@dataclass
class Measured:
    """Medians per contender: wall time per request (1e6 / req/s) and server CPU time per
    request (empty where it cannot be read), and the uvicorn implementations used."""

    wall: dict[str, float]
    cpu: dict[str, float]
    loop: str
    http: str


def measure(load: Load, scale: Scale, contenders: Sequence[str]) -> Measured:
    """Serve every contender, check it, load each in turn; medians per contender."""
    servers: dict[str, Server] = {}
    try:
        for case in contenders:  # started together: each builds its app and key meanwhile
            servers[case] = Server(case)
        for server in servers.values():
            server.wait_ready()
        # Each server that verifies has its own key and accepts the tokens it minted; the others
        # are sent the chain's. The tokens differ only in their signature's bytes.
        tokens = {case: servers[case if case in VERIFYING else CHAIN].token for case in contenders}
        if len({len(token) for token in tokens.values()}) != 1:
            raise RuntimeError("the servers' tokens differ in length")
        for case, server in servers.items():
            check(server, tokens[case])
        cpu: dict[str, list[float]] = {case: [] for case in contenders}
        runners = {
            case: runner(load, servers[case], tokens[case], scale, cpu[case]) for case in contenders
        }
        wall = interleave(runners, scale.rounds)
        cpu_medians = {case: statistics.median(values) for case, values in cpu.items() if values}
        chain = servers[CHAIN]
        return Measured(
            wall, cpu_medians if len(cpu_medians) == len(contenders) else {}, chain.loop, chain.http
        )
    finally:
        for server in servers.values():
            server.close()


def build_rows(label: str, measured: Measured) -> list[Row]:
    """Ours against bare and against slowapi: wall time per request (ratio = the share of
    the peer's req/s we keep), then the server's CPU time per request where measured."""
    rows = []
    for what, medians in (
        ("us per request (1e6 / req/s)", measured.wall),
        ("server CPU us per request", measured.cpu),
    ):
        if medians:
            case = f"uvicorn + {label}, {what}: "
            rows += [
                row(case + ours, medians[ours], peer, medians[peer])
                for ours in OURS
                for peer in (BARE, SLOWAPI, FLOOR)
                if peer in medians
            ]
            rows += [
                row(f"{case[:-2]}, one layer alone: {layer}", medians[layer], BARE, medians[BARE])
                for layer in medians
                if layer.startswith(LAYER)
            ]
    return rows


def print_rps(measured: Measured) -> None:
    """Requests per second of every contender and its share of bare Starlette's; the
    server's CPU time per request and the share of bare's it implies."""
    wall, cpu = measured.wall, measured.cpu
    print("\n== requests per second (median) ==")
    width = max(len(name) for name in wall)
    bare = 1e6 / wall[BARE]
    for name, us in wall.items():
        rps = 1e6 / us
        line = f"{name:<{width}}  {rps:>7.0f} req/s  {us:>7.1f} us/req  {rps / bare:>6.1%} of bare"
        if cpu:
            line += (
                f"  | server CPU {cpu[name]:>6.1f} us/req  {cpu[BARE] / cpu[name]:>6.1%} of bare"
            )
        print(line)


def targets(measured: Measured) -> list[Target]:
    """The issue's throughput target for the chain and the Gateway-built chain; then the
    same judged by server CPU per request (what the ratio would be with a core each)."""
    found = []
    wall, cpu = measured.wall, measured.cpu
    bare = 1e6 / wall[BARE]
    names = (
        (CHAIN, "chain keeps >= 70% of bare Starlette's requests per second"),
        (WRAP, "  the same, built by Gateway(...).wrap"),
    )
    for ours, name in names:
        rps = 1e6 / wall[ours]
        found.append(
            Target(name, f"{rps:.0f} vs {bare:.0f} req/s ({rps / bare:.1%})", rps >= KEEP * bare)
        )
    if cpu:
        for ours, name in names:
            share = cpu[BARE] / cpu[ours]
            found.append(
                Target(
                    f"{name.strip()}, by server CPU per request",
                    f"{cpu[ours]:.1f} vs {cpu[BARE]:.1f} us ({share:.1%})",
                    share >= KEEP,
                )
            )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Serve every contender, load each in turn, print the tables and target, write JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s runs, one round (smoke test)")
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk; in --quick without wrk, the Python one)",
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help="also each of our layers alone (where the chain's cost goes; about 4.5 minutes)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON path (default {RESULTS})")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    load = choose_load(args.load, args.quick, scale.connections)
    label = load.label(scale.seconds)

    # With the layers, the floor is left out so the run stays under five minutes.
    contenders = (*(c for c in CONTENDERS if c != FLOOR), *LAYERS) if args.layers else CONTENDERS
    measured = measure(load, scale, contenders)
    rows = build_rows(label, measured)
    print_rows(rows, f"uvicorn on loopback, {label} (us per request)")
    print_rps(measured)
    print_targets(targets(measured), "targets (issue 6)")
    print(
        f"\nnotes: {label}, {scale.warmup} s warm-up, median of {scale.rounds} round(s), order"
        f" rotating; uvicorn one worker, no access log, lifespan off, loop {measured.loop}, http"
        f" {measured.http} (the same for every server; uvloop and httptools are used when"
        " importable); every request carries an RS256 bearer token of the same length (each"
        " of ours verifies its own token once, then its token cache answers; bare and"
        " slowapi ignore it); limits 100000000/hour in memory, so nothing is denied (any"
        " non-2xx answer fails the run); the load generator shares the 2 cores with the"
        " server. Server CPU per request: the server process's user + system time over"
        " each timed run divided by its requests; unlike req/s it hardly moves with what"
        " else runs on the machine."
    )
    if isinstance(load, PythonLoad):
        print("notes: wrk not used: these figures measure the Python generator. " + INSTALL_WRK)
    write_rows(args.out, rows)
    print(f"\nwrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
