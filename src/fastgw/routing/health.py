"""Per-target health in one worker process: ejection, half-open probes, rate-limit pressure and
latency, as plain state moved by plain functions with the time passed in.

A target is ejected after ``consecutive_failures`` failures in a row, or when the failures in the
last ``window`` seconds reach ``error_rate`` of at least ``min_requests`` answers. It stays out for
a cool-down that doubles with each ejection in a row (up to ``max_cooldown``). When the cool-down
ends it is half-open: exactly one request (the probe) may go to it; success closes it and forgets
the ejections, failure ejects it again for longer. Only the probe's own outcome counts there (by
the ticket ``started`` handed it): a request sent before the ejection that ends meanwhile says
nothing about the target now. A probe whose outcome never comes back (its request was cancelled) is
given up after a cool-down, so a target can never stay half-open forever.

Failures are 5xx answers and connection errors or timeouts. A 429, ``retry-after``, or
``x-ratelimit-remaining-requests`` / ``-tokens`` at (almost) nothing is not a failure but
*pressure*: the provider is about to refuse, so the target is tried after the unpressured ones
until the hint runs out (the Retry-After, else a few seconds). Latency is a peak-EWMA of the time to
the response head (up at once on a slow answer, down gradually), which fades as it grows stale, so
a target that was slow once is tried again later; a target never measured gets a neutral prior
(the mean of its route's measured targets), neither favoured nor shunned.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from fastgw.config import HealthConfig

PRESSURE_DEFAULT_S = 5.0  # how long a low x-ratelimit-remaining lowers a target without a reset hint
PRESSURE_REMAINING = 1  # remaining requests/tokens at or below this count as about to be refused
NEUTRAL_LATENCY_S = 0.25  # the prior when no target of the route has been measured yet


class State:
    CLOSED = "closed"
    EJECTED = "ejected"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class TargetHealth:
    """The health of one target. Only ``Health`` changes it."""

    state: str = State.CLOSED
    consecutive: int = 0
    events: deque = field(default_factory=deque)  # (time, failed) within the window
    failures_in_window: int = 0
    ejections: int = 0  # in a row; sets the next cool-down
    ejected_until: float = 0.0
    probe_started: float | None = None  # a half-open probe in flight since then
    probe: int = 0  # the ticket of that probe: only its own outcome resolves the half-open state
    tickets: int = 0
    pressure_until: float = 0.0
    latency: float | None = None  # peak-EWMA seconds; None: never measured
    latency_at: float = 0.0
    in_flight: int = 0


class Health:
    """Every target's health for this process, keyed by the target's id."""

    def __init__(self, config: HealthConfig) -> None:
        self.config = config
        self.targets: dict[str, TargetHealth] = {}

    def get(self, key: str) -> TargetHealth:
        th = self.targets.get(key)
        if th is None:
            th = self.targets[key] = TargetHealth()
        return th

    # --- reading ------------------------------------------------------------------------------

    def available(self, key: str, now: float) -> bool:
        """Whether ``key`` may take a request now (a half-open target: only if no probe is out)."""
        th = self.get(key)
        if th.state == State.CLOSED:
            return True
        if th.state == State.EJECTED:
            return now >= th.ejected_until
        return th.probe_started is None or now - th.probe_started >= self.config.cooldown

    def pressured(self, key: str, now: float) -> bool:
        return now < self.get(key).pressure_until

    def latency(self, key: str, now: float, prior: float) -> float:
        """The target's latency estimate; ``prior`` when it was never measured.

        An estimate nobody refreshes fades towards zero (time constant ``latency_decay``), so a
        target that lost to a faster one is tried again once in a while and measured afresh:
        after about ``latency_decay * ln(slow / fast)`` seconds without traffic. That also undoes
        a peak: one slow answer from the fast target does not hand the slow one all the traffic
        for longer than that.
        """
        th = self.get(key)
        if th.latency is None:
            return prior
        return th.latency * math.exp(-max(0.0, now - th.latency_at) / self.config.latency_decay)

    def prior(self, keys: list[str], now: float) -> float:
        """The neutral guess for an unmeasured target: the mean of its route's measured estimates
        (as ``latency`` gives them now), so next to a single measured target it is an even draw."""
        known = [self.latency(k, now, 0.0) for k in keys if self.get(k).latency is not None]
        return sum(known) / len(known) if known else NEUTRAL_LATENCY_S

    # --- changing -----------------------------------------------------------------------------

    def started(self, key: str, now: float) -> int:
        """A request goes to ``key``: a half-open target's probe starts. Returns the request's ticket
        for ``finished``/``abandoned`` (0: not a probe).

        An ejected target only gets a request before its cool-down ends when every target of its
        route is ejected (balance.py): that request is its probe too, so a success brings it back.
        """
        th = self.get(key)
        th.in_flight += 1
        if th.state == State.EJECTED:
            th.state = State.HALF_OPEN
        if th.state == State.HALF_OPEN:
            th.probe_started = now
            th.tickets += 1
            th.probe = th.tickets
            return th.probe
        return 0

    def finished(self, key: str, now: float, failed: bool, latency: float | None, ticket: int = 0) -> None:
        """The outcome of a request that ``started`` (with its ticket); ``latency`` is None for
        connection failures."""
        c, th = self.config, self.get(key)
        th.in_flight = max(0, th.in_flight - 1)
        if latency is not None:
            self._observe_latency(th, now, latency)
        if th.state == State.HALF_OPEN:
            if ticket != th.probe or not ticket:
                return  # sent before the ejection: says nothing about the target now
            th.probe_started, th.probe = None, 0
            if failed:
                self._eject(th, now)
            else:
                th.state, th.ejections, th.consecutive = State.CLOSED, 0, 0
                th.events.clear()
                th.failures_in_window = 0
            return
        if th.state == State.EJECTED:  # an answer from before the ejection: counts for nothing
            return
        th.events.append((now, failed))
        th.failures_in_window += failed
        self._trim(th, now)
        th.consecutive = th.consecutive + 1 if failed else 0
        n = len(th.events)
        if th.consecutive >= c.consecutive_failures or (
            n >= c.min_requests and th.failures_in_window >= c.error_rate * n
        ):
            self._eject(th, now)

    def abandoned(self, key: str, ticket: int = 0) -> None:
        """A request that ``started`` was cancelled: no outcome; if it was the probe, another may go."""
        th = self.get(key)
        th.in_flight = max(0, th.in_flight - 1)
        if ticket and ticket == th.probe:
            th.probe_started, th.probe = None, 0

    def rate_limit_hint(self, key: str, now: float, retry_after: float | None, remaining: int | None) -> None:
        """The provider said it is about to refuse (or did, with a 429): lower the target for a while."""
        th = self.get(key)
        if retry_after is not None:
            th.pressure_until = max(th.pressure_until, now + min(retry_after, self.config.max_cooldown))
        elif remaining is not None and remaining <= PRESSURE_REMAINING:
            th.pressure_until = max(th.pressure_until, now + PRESSURE_DEFAULT_S)

    def _eject(self, th: TargetHealth, now: float) -> None:
        c = self.config
        th.ejections += 1
        th.state = State.EJECTED
        th.ejected_until = now + min(c.cooldown * 2 ** (th.ejections - 1), c.max_cooldown)
        th.probe_started, th.probe = None, 0
        th.consecutive = 0
        th.events.clear()
        th.failures_in_window = 0

    def _trim(self, th: TargetHealth, now: float) -> None:
        horizon = now - self.config.window
        while th.events and th.events[0][0] < horizon:
            th.failures_in_window -= th.events.popleft()[1]

    def _observe_latency(self, th: TargetHealth, now: float, sample: float) -> None:
        if th.latency is None or sample > th.latency:
            th.latency = sample  # peak: a slow answer counts in full at once
        else:
            w = math.exp(-max(0.0, now - th.latency_at) / self.config.latency_decay)
            th.latency = th.latency * w + sample * (1 - w)
        th.latency_at = now
