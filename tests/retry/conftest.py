"""Helpers for the retry tests: a flaky function factory and an event recorder."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from sysdesign_kit.events import Event, RetryAttempted, RetryGaveUp


class Recorder(list[Event]):
    """A list listener with views on the two retry events."""

    def __call__(self, event: Event) -> None:
        self.append(event)

    @property
    def attempted(self) -> list[RetryAttempted]:
        return [e for e in self if isinstance(e, RetryAttempted)]

    @property
    def gave_up(self) -> list[RetryGaveUp]:
        return [e for e in self if isinstance(e, RetryGaveUp)]


@pytest.fixture
def events() -> Recorder:
    return Recorder()


def script(outcomes: Iterable[Any]) -> Callable[[], Any]:
    """A function that, call after call, raises or returns the next scripted outcome."""
    pending = list(outcomes)

    def step() -> Any:
        outcome = pending.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    step.remaining = pending  # type: ignore[attr-defined]
    return step
