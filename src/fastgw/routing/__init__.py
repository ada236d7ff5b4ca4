"""Routing policy: pure decisions with no I/O, so each is unit-tested with an injected clock and
random source. ``stages/router.py`` is the only caller, and the only place that waits or sends.

    table.py      routes from config: a model name -> targets (provider, model, key, weight)
    retry.py      when to try again and how long to wait (Helicone-Retry-*, Retry-After)
    fallbacks.py  Helicone-Fallbacks parsed and applied (target URL, headers, onCodes, body keys)
    health.py     per-target ejection, half-open probes, rate-limit pressure, peak-EWMA latency
    balance.py    the order targets are tried in: ordered, weighted, latency (P2C), cost
"""
