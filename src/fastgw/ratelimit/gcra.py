"""The limiting arithmetic, shared by the in-process and the Redis limiter so they cannot disagree.

The algorithm is GCRA (the generic cell rate algorithm), which is a token bucket written as a time.
A bucket with capacity ``quota`` that refills ``quota`` per ``window`` is described by one number,
its *debt*: how many seconds it is short of full. A request costs ``window / quota`` seconds of
debt, is allowed while the debt after it stays within ``window`` (so a full bucket takes exactly
``quota`` requests in a burst), and debt drains at one second per second. Stored, the debt becomes
the theoretical arrival time ``TAT = now + debt``, the moment the bucket is full again.

Why GCRA rather than a classic token bucket (``tokens`` plus ``last refill time``):

* One number per bucket instead of two, so Redis holds a plain string rather than a hash, and the
  script does one GET and one SET per key.
* That number is also the key's expiry: a bucket whose TAT has passed is full, which is the same
  as no key at all, so ``SET ... PX debt`` makes idle buckets vanish on their own, and the memory
  limiter can drop any entry whose TAT is in the past without changing a single decision.
* ``Helicone-RateLimit-Reset`` (seconds until fully refilled) is the debt itself, and Retry-After
  is one subtraction; nothing is stepped forward in time to answer either.
* Cents fit without a second algorithm: "allowed while the balance is positive" is ``debt <
  window``, and spending the real cost afterwards adds debt without a cap, so an expensive call can
  take the balance below zero and later checks wait until it refills.

A sliding-window log would be exact but costs memory per request; a fixed window lets a client
spend twice the quota across a window boundary. GCRA has neither problem.

Floating point: ``window / quota`` is rarely exact (quota 7 in 60 s), so seven costs can add up to a
hair over 60. Comparisons allow ``EPS_S`` (one microsecond, the resolution of Redis TIME) so the
quota-th request of a burst is never refused by rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from fastgw.ratelimit.policy import Policy

EPS_S = 1e-6

# What an operation does to its bucket (these letters are also the Lua script's ARGV values).
CONSUME = "c"  # take ``amount`` if it fits, else refuse and take nothing (u=request checks)
POSITIVE = "p"  # take nothing; refuse unless the balance is above zero (u=cents checks)
SPEND = "s"  # take ``amount`` unconditionally, even below zero (u=cents after the response)


@dataclass(frozen=True, slots=True)
class Decision:
    """One policy's answer, with what the Helicone-RateLimit-* response headers need.

    ``remaining`` is floored at 0, and whole for u=request (an int, so it prints without ``.0``).
    ``reset_s`` is the time until the bucket is full again; ``retry_after_s`` the time until this
    request would be allowed, 0 when it is. In a ``check_many`` the request goes ahead only if every
    decision is allowed; when one refuses, the others report their buckets untouched.
    """

    allowed: bool
    limit: float
    remaining: float
    reset_s: float
    retry_after_s: float
    policy: Policy


class Op(NamedTuple):
    """One bucket operation; a limiter call is a list of these, applied all-or-nothing."""

    key: str
    policy: Policy
    mode: str
    amount: float


def check_op(key: str, policy: Policy) -> Op:
    """The operation a request's check makes: a request costs 1; a cents check costs nothing yet."""
    if policy.unit == "request":
        return Op(key, policy, CONSUME, 1.0)
    return Op(key, policy, POSITIVE, 0.0)


def spend_op(key: str, policy: Policy, amount: float) -> Op:
    amount = float(amount)
    if not (math.isfinite(amount) and amount >= 0):
        raise ValueError(f"the amount to spend must be a finite number of at least 0, got {amount!r}")
    return Op(key, policy, SPEND, amount)


def step(debt: float, op: Op) -> tuple[bool, float]:
    """Apply ``op`` to a bucket ``debt`` seconds short of full: (allowed, the debt afterwards)."""
    window = op.policy.window_s
    if op.mode == POSITIVE:
        return debt < window - EPS_S, debt
    after = debt + op.amount * window / op.policy.quota
    if op.mode == CONSUME and after > window + EPS_S:
        return False, debt
    return True, after


def decide(op: Op, allowed: bool, debt: float) -> Decision:
    """The Decision for ``op``, given whether it was allowed and its bucket's debt to report."""
    policy = op.policy
    window, quota = policy.window_s, policy.quota
    interval = window / quota
    balance = (window - debt) / interval
    remaining: float
    if policy.unit == "request":
        remaining = max(0, min(math.floor(quota), math.floor((window - debt + EPS_S) / interval)))
    else:
        remaining = max(0.0, round(balance, 6))
    if allowed:
        retry = 0.0
    elif op.mode == POSITIVE:
        retry = debt - window + 2 * EPS_S  # until debt < window - EPS_S
    else:
        retry = debt + op.amount * interval - window  # until this cost fits
    return Decision(allowed, quota, remaining, debt, max(retry, 0.0), policy)
