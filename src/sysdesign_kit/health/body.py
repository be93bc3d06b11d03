"""The response bodies: ``application/health+json`` and the verbose plain-text listing.

The JSON follows draft-inadarei-api-health-check-06: a required ``status`` (``pass``,
``warn`` or ``fail``); the service's optional ``version``, ``releaseId``, ``serviceId``,
``description``; ``output`` and ``notes``; and ``checks``, keyed
``"{componentName}:{measurementName}"``, each an array with one object carrying
``componentId``, ``componentType``, ``observedValue``, ``observedUnit``, ``status``,
``affectedEndpoints``, ``time`` (RFC 3339) and ``output``. As the draft asks, ``output``
and ``affectedEndpoints`` are left out on ``pass``.

Without details (an unauthenticated caller, when the app is configured so), only each
check's status, type and time remain: no outputs, values, ids, endpoints or service
fields, since these tell an attacker what to aim at (the draft's security considerations).

The verbose text reads like the Kubernetes API server's ``/readyz?verbose``::

    [+]redis ok
    [-]database failed: timed out after 2 s
    [+]disk excluded: ok
    ready check failed
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sysdesign_kit.health.reading import Reading, Status, rfc3339

if TYPE_CHECKING:
    from sysdesign_kit.health.checks import Check

__all__ = [
    "HEALTH_JSON",
    "ServiceInfo",
    "Verdict",
    "health_document",
    "verbose_text",
]

#: The media type of the draft's documents.
HEALTH_JSON: Final = "application/health+json"
_WITHHELD = "reason withheld"


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """The service's own fields of the document (each optional)."""

    version: str | None = None
    release_id: str | None = None
    service_id: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one check stands for in one response."""

    check: Check
    status: Status
    output: str | None
    reading: Reading | None


def health_document(
    verdicts: Iterable[Verdict],
    *,
    status: Status,
    info: ServiceInfo,
    details: bool,
    output: str | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The health+json document for ``verdicts`` with overall ``status``."""
    document: dict[str, Any] = {"status": status}
    if details:
        fields = (
            ("version", info.version),
            ("releaseId", info.release_id),
            ("serviceId", info.service_id),
            ("description", info.description),
        )
        document.update({field: value for field, value in fields if value is not None})
        if notes:
            document["notes"] = list(notes)
    if output and status != "pass":
        document["output"] = output
    document["checks"] = {verdict.check.key: [_component(verdict, details)] for verdict in verdicts}
    return document


def _component(verdict: Verdict, details: bool) -> dict[str, Any]:
    check, reading, status = verdict.check, verdict.reading, verdict.status
    entry: dict[str, Any] = {}
    if details and check.component_id is not None:
        entry["componentId"] = check.component_id
    entry["componentType"] = check.component_type
    if details and reading is not None and reading.observed_value is not None:
        entry["observedValue"] = reading.observed_value
        if reading.observed_unit is not None:
            entry["observedUnit"] = reading.observed_unit
    entry["status"] = status
    if details and status != "pass" and check.affected_endpoints:
        entry["affectedEndpoints"] = list(check.affected_endpoints)
    if reading is not None:
        entry["time"] = rfc3339(reading.time)
    if details and status != "pass" and verdict.output:
        entry["output"] = verdict.output
    return entry


def verbose_text(
    verdicts: Iterable[Verdict],
    *,
    endpoint: str,
    status: Status,
    details: bool,
    excluded: Iterable[str] = (),
    unknown: Sequence[str] = (),
    extra: Iterable[tuple[str, Status, str]] = (),
) -> str:
    """The Kubernetes-style listing: one ``[+]``/``[-]`` line per check, then a verdict.

    ``extra`` adds lines for pseudo-checks such as draining: ``(name, status, output)``.
    """
    lines = [_line(v.check.name, v.status, v.output, details) for v in verdicts]
    lines.extend(f"[+]{name} excluded: ok" for name in excluded)
    lines.extend(_line(name, state, output, True) for name, state, output in extra)
    if unknown:
        shown = ",".join(f'"{name}"' for name in unknown)
        lines.append(f"warn: some health checks cannot be excluded: no matches for {shown}")
    outcome = "failed" if status == "fail" else "passed"
    lines.append(f"{endpoint} check {outcome}")
    return "\n".join(lines) + "\n"


def _line(name: str, status: Status, output: str | None, details: bool) -> str:
    if status == "pass":
        return f"[+]{name} ok"
    reason = " ".join((output or status).split()) if details else _WITHHELD
    if status == "warn":
        return f"[+]{name} warn: {reason}"
    return f"[-]{name} failed: {reason}"
