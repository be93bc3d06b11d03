"""The floor: the full chain's work for the benchmark's request, written as one function.

A measurement device, not a contender and not product code. It does what the chain does
for the request the gateway benchmarks send, with nothing a product needs around it:

- the request id: the caller's ``X-Request-ID`` taken as it is, else a counter with a
  per-process prefix; echoed on the response;
- the bearer token: looked up by signature in a dict, verified by pyjwt on a miss (RS256,
  issuer and audience checked), expiry compared on every hit; a token that fails is
  answered 401 with no body;
- two token buckets (GCRA) in dicts, by tier and subject and by client address, with the
  ``RateLimit-Policy`` and ``RateLimit`` headers filled in from one template;
- the route's rule (one regex, scope ``read``);
- a request-duration histogram by method, route template and status, under a lock.

What it leaves out is everything that makes the chain a library: configuration, tiers and
rules as data, keys checked for length and charset, other credentials and algorithms,
denials (a request it would refuse raises), events, timeline stages, the route template
taken from the router, failure policies. So the chain's distance from it is the price of
those; and a target the floor itself barely meets is one no full implementation in Python
can meet by trimming its code.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from bisect import bisect_left
from typing import Any

import jwt

from benchmarks._gateway_jwt import AUDIENCE, ISSUER

__all__ = ["Floor"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_ROUTE = re.compile(r"/api/v1/products/[^/]+")
_TEMPLATE = "/api/v1/products/{id}"
_QUOTA = 100_000_000  # per hour, as the chain's limits
_INTERVAL_US = 3_600_000_000 // _QUOTA
_TAU_US = _INTERVAL_US * _QUOTA
_POLICY = b'"%s";q=100000000;w=3600, "ip";q=100000000;w=3600'
_RATELIMIT = b'"%s";r=%d;t=1, "ip";r=%d;t=1'


class Floor:
    """Pure ASGI: the chain's work for the benchmark's request, inlined (see the module)."""

    def __init__(self, app: Any, public_key: Any) -> None:
        self.app = app
        self._key = public_key
        self._tokens: dict[bytes, tuple[tuple[str, str, frozenset[str]], int]] = {}
        self._tat: dict[tuple[str, ...], int] = {}
        self._prefix = os.urandom(8).hex()
        self._next = itertools.count(1).__next__
        self._histogram: dict[tuple[str, str, int], list[float]] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
        if request_id is None:
            request_id = f"{self._prefix}{self._next():08x}"
        scope["request_id"] = request_id
        principal = None
        if authorization is not None:
            token = authorization[7:]
            entry = self._tokens.get(token[token.rfind(b".") + 1 :])
            if entry is not None and entry[1] > time.time():
                principal = entry[0]
            else:
                try:
                    claims = jwt.decode(
                        token, self._key, algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE
                    )
                except jwt.InvalidTokenError:
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b""})
                    return
                principal = (claims["sub"], claims["tier"], frozenset(claims["scope"].split()))
                self._tokens[token[token.rfind(b".") + 1 :]] = (principal, claims["exp"])
        scope["principal"] = principal
        address = scope["client"][0]
        tier = principal[1] if principal else "anonymous"
        now = time.monotonic_ns() // 1000
        remaining = []
        for key in ((tier, principal[0] if principal else address), ("ip", address)):
            tat = self._tat.get(key, 0)
            new_tat = (tat if tat > now else now) + _INTERVAL_US
            if new_tat - _TAU_US > now:
                raise RuntimeError("the floor does not model a denial")
            self._tat[key] = new_tat
            remaining.append((_TAU_US - new_tat + now) // _INTERVAL_US)
        if (
            scope["method"] != "GET"
            or not _ROUTE.fullmatch(scope["path"])
            or (principal and "read" not in principal[2])
        ):
            raise RuntimeError("the floor does not model a refusal")
        tier_bytes = tier.encode()
        headers = [
            (b"ratelimit-policy", _POLICY % tier_bytes),
            (b"ratelimit", _RATELIMIT % (tier_bytes, remaining[0], remaining[1])),
            (b"x-request-id", request_id.encode()),
        ]
        status = 0

        async def answer(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, answer)
        duration = time.perf_counter() - started
        label = (scope["method"], _TEMPLATE, status)
        with self._lock:
            counts = self._histogram.get(label)
            if counts is None:
                counts = self._histogram[label] = [0.0] * (len(_BUCKETS) + 2)
            counts[bisect_left(_BUCKETS, duration)] += 1
            counts[-1] += duration
