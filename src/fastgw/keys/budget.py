"""Budgets: which spend counters a request is held to, and the refusal when one is used up.

Spend is kept in integer nano-dollars (the exporter's unit), one counter per scope and period:
``key:<key_id>`` or ``team:<name>``, times the UTC calendar day, the UTC calendar month, and all
time. A request is checked against the committed counters before it goes upstream and charged its
real cost after the answer, so concurrent requests can overspend by at most what those already in
flight cost: each of them passed a check that saw every charge committed before it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastgw.errors import BudgetExceeded
from fastgw.keys.record import Budget

NANO_PER_USD = 1_000_000_000
# Counters outlive their period by a margin (Redis expires them; SQLite keeps them for listing).
_DAY_TTL_S = 3 * 86400
_MONTH_TTL_S = 63 * 86400


@dataclass(frozen=True, slots=True)
class Cap:
    """One spend counter a request is held to."""

    cell: str  # the counter's name in the store: "<scope>|<period>"
    limit_nano: int
    owner: str  # for the message: "gateway key 'ci' (key_...)" or "team 'research'"
    period: str  # "day", "month" or "total"
    label: str  # for the message: "2026-11-23 UTC", "2026-11 UTC" or "" for total
    ttl_s: int  # how long the store keeps the counter; 0: forever


def period_cells(scope: str, now: float) -> dict[str, tuple[str, str, int]]:
    """{period: (cell, label, ttl)} for the periods that contain ``now`` (Unix seconds, UTC)."""
    t = time.gmtime(now)
    day, month = time.strftime("%Y-%m-%d", t), time.strftime("%Y-%m", t)
    return {
        "day": (f"{scope}|day:{day}", f"{day} UTC", _DAY_TTL_S),
        "month": (f"{scope}|month:{month}", f"{month} UTC", _MONTH_TTL_S),
        "total": (f"{scope}|total", "", 0),
    }


def caps_for(key_id: str, key_name: str, budget: Budget, team: str | None, team_budget: Budget | None,
             now: float) -> list[Cap]:
    caps: list[Cap] = []
    owners = [(f"key:{key_id}", f"gateway key {key_name!r} ({key_id})", budget)]
    if team is not None and team_budget is not None:
        owners.append((f"team:{team}", f"team {team!r}", team_budget))
    for scope, owner, b in owners:
        cells = period_cells(scope, now)
        for period, usd in b.caps():
            cell, label, ttl = cells[period]
            caps.append(Cap(cell, round(usd * NANO_PER_USD), owner, period, label, ttl))
    return caps


def check(caps: list[Cap], spent: list[int]) -> None:
    """Raise BudgetExceeded for the first cap whose committed spend has reached its limit."""
    for cap, nano in zip(caps, spent):
        if nano >= cap.limit_nano:
            raise BudgetExceeded(refusal(cap, nano))


def refusal(cap: Cap, spent_nano: int) -> str:
    period = {"day": "daily", "month": "monthly", "total": "total"}[cap.period]
    when = f" for {cap.label}" if cap.label else ""
    return (f"{cap.owner} is over its {period} budget of ${cap.limit_nano / NANO_PER_USD:.2f}{when} "
            f"(spent ${spent_nano / NANO_PER_USD:.6f}); requests are refused until "
            f"{'the period ends' if cap.label else 'the budget is raised'}")


def usd(nano: int) -> str:
    return f"${nano / NANO_PER_USD:.6f}"
