"""The breaker against a plain reference model, driven by hypothesis.

The model below is the issue's description written as directly as possible (a list for the
window, a counter for trials, an epoch per state); the breaker must agree with it after every
step: which calls are admitted, how rejections are answered, the state, the window, the
trials, the time left, and the transitions it publishes.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from sysdesign_kit.breaker import CircuitBreaker, CountWindow, Permit
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen
from sysdesign_kit.events import BreakerTransitioned, Event


@dataclass
class Model:
    size: int
    minimum: int
    rate: float
    open_for: float
    growth: float
    cap: float | None
    trials: int
    state: str = "closed"
    epoch: int = 0
    window: list[bool] = field(default_factory=list)  # True = failed
    open_until: float = 0.0
    trips: int = 0
    handed_out: int = 0
    passed: int = 0
    forced: bool = False
    transitions: list[tuple[str, str]] = field(default_factory=list)

    def move(self, state: str) -> None:
        if state != self.state:
            self.transitions.append((self.state, state))
        self.state = state
        self.epoch += 1
        self.window = []
        self.handed_out = self.passed = 0

    def trip(self, now: float) -> None:
        self.trips += 1
        duration = self.open_for * self.growth ** (self.trips - 1)
        if self.cap is not None:
            duration = min(duration, self.cap)
        self.move("open")
        self.open_until = now + duration

    def acquire(self, now: float) -> tuple[bool, str, float, int]:
        """(admitted, rejected state, retry_after, epoch of the permit)"""
        if self.state == "open":
            if self.forced:
                return False, "open", math.inf, -1
            if now < self.open_until:
                return False, "open", self.open_until - now, -1
            self.move("half_open")
        if self.state == "half_open":
            if self.handed_out == self.trials:
                return False, "half_open", 0.0, -1
            self.handed_out += 1
        return True, "", 0.0, self.epoch

    def finish(self, epoch: int, outcome: str, now: float) -> None:
        if epoch != self.epoch:
            return
        if outcome in ("ignored", "cancelled"):
            if self.state == "half_open":
                self.handed_out -= 1
            return
        failed = outcome == "failure"
        if self.state == "closed":
            self.window = [*self.window, failed][-self.size :]
            calls, failures = len(self.window), sum(self.window)
            rate_counts = failed and not self.forced and calls >= self.minimum
            if rate_counts and failures / calls >= self.rate:
                self.trip(now)
        elif self.state == "half_open":
            if failed:
                self.trip(now)
            else:
                self.passed += 1
                if self.passed == self.trials:
                    self.move("closed")
                    self.trips = 0


class BreakerAgainstModel(RuleBasedStateMachine):
    calls = Bundle("calls")

    @initialize(
        size=st.integers(1, 8),
        data=st.data(),
        rate=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
        trials=st.integers(1, 3),
        growth=st.sampled_from([1.0, 2.0]),
        cap=st.sampled_from([None, 100.0]),
    )
    def build(
        self,
        size: int,
        data: st.DataObject,
        rate: float,
        trials: int,
        growth: float,
        cap: float | None,
    ) -> None:
        minimum = data.draw(st.integers(1, size))
        self.clock = ManualClock()
        self.events: list[Event] = []
        self.breaker = CircuitBreaker(
            "model",
            window=CountWindow(size),
            minimum_calls=minimum,
            failure_rate=rate,
            half_open_calls=trials,
            open_for=30.0,
            open_for_growth=growth,
            open_for_max=cap,
            ignore=KeyError,
            clock=self.clock,
            listeners=[self.events.append],
        )
        self.model = Model(size, minimum, rate, 30.0, growth, cap, trials)

    @rule(seconds=st.sampled_from([0.0, 0.5, 10.0, 29.999, 30.0, 61.0, 130.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.model.state == "open" and not self.model.forced)
    @rule(extra=st.sampled_from([-0.001, 0.0, 0.001]))
    def wait_out_the_open_time(self, extra: float) -> None:
        self.clock.set(max(self.clock.monotonic(), self.model.open_until + extra))

    @rule(target=calls)
    def start(self) -> tuple[Permit, int] | None:
        admitted, state, retry_after, epoch = self.model.acquire(self.clock.monotonic())
        refused: CircuitOpen | None = None
        try:
            permit = self.breaker.acquire()
        except CircuitOpen as error:
            refused = error
        if refused is not None:
            assert not admitted
            assert (refused.state, refused.retry_after) == (state, retry_after)
            return None
        assert admitted
        return permit, epoch

    @rule(outcome=st.sampled_from(["success", "success", "failure", "ignored", "cancelled"]))
    def call_through(self, outcome: str) -> None:
        self.finish(self.start(), outcome)

    @precondition(lambda self: self.model.state == "open" and not self.model.forced)
    @rule(outcome=st.sampled_from(["failure", "success"]))
    def probe_after_the_open_time(self, outcome: str) -> None:
        self.clock.set(max(self.clock.monotonic(), self.model.open_until))
        self.call_through(outcome)

    @rule(
        call=consumes(calls),
        outcome=st.sampled_from(["success"] * 3 + ["failure"] * 2 + ["ignored", "cancelled"]),
    )
    def finish(self, call: tuple[Permit, int] | None, outcome: str) -> None:
        if call is None:
            return
        permit, epoch = call
        if outcome == "success":
            self.breaker.on_success(permit)
        elif outcome == "failure":
            self.breaker.on_failure(permit)
        elif outcome == "ignored":
            self.breaker.on_error(permit, KeyError("ignored"))
        else:
            self.breaker.on_error(permit, asyncio.CancelledError())
        self.model.finish(epoch, outcome, self.clock.monotonic())

    # Mostly nothing: operators are rare, and each action wipes the state under test.
    @rule(action=st.sampled_from(["", "", "", "", "", "", "force_open", "force_closed", "reset"]))
    def operate(self, action: str) -> None:
        if not action:
            return
        getattr(self.breaker, action)()
        model = self.model
        model.forced = action != "reset"
        if action != "force_open":
            model.trips = 0
        model.move("open" if action == "force_open" else "closed")
        model.open_until = math.inf if action == "force_open" else 0.0

    @invariant()
    def agrees(self) -> None:
        if not hasattr(self, "model"):
            return
        model, stats = self.model, self.breaker.stats()
        assert stats.state.value == model.state
        assert stats.forced == model.forced
        assert stats.trips == model.trips
        if model.state == "closed":
            assert (stats.calls, stats.failures) == (len(model.window), sum(model.window))
        if model.state == "half_open":
            assert (stats.trials, stats.trials_passed) == (model.handed_out, model.passed)
        expected = max(0.0, model.open_until - self.clock.monotonic())
        assert stats.retry_after == (expected if model.state == "open" else 0.0)
        published = [
            (e.previous, e.state) for e in self.events if isinstance(e, BreakerTransitioned)
        ]
        assert published == model.transitions


BreakerAgainstModel.TestCase.settings = settings(
    max_examples=300, stateful_step_count=80, deadline=None
)
TestBreakerAgainstModel = BreakerAgainstModel.TestCase
