#!/usr/bin/env python3
"""fastgw's CLI with the worker's request logging cut short at one point, for bench_log_packing.py.

    python benchmarks/log_cut.py CUT serve --config FILE

CUT is where ``RequestLogger.log_request`` stops, on every request:
  full       nothing changed: packed and pushed into the ring
  none       returns at once: no record (the stages that logging adds still run)
  pack       packed as usual, then dropped instead of pushed
  pack-warm  the first request's context packed again on every request, then dropped: the same
             code as "pack" on data that stays in the caches
  pack-twice packed twice in a row, both dropped: the second costs what packing costs with its
             code just run, the first what it costs after the rest of a request ran

The change is made before the CLI starts, so the worker (forked by the supervisor) has it too.
Nothing here ships: it measures what each step of the worker's logging costs in place.
"""
from __future__ import annotations

import sys
from typing import Any

from fastgw.cli import main
from fastgw.requestlog import logger

CUTS = ("full", "none", "pack", "pack-warm", "pack-twice")


class _Dropped:
    def push(self, record: bytes) -> None:
        pass


def cut(where: str) -> None:
    log_request = logger.RequestLogger.log_request
    if where == "full":
        return
    if where == "none":
        def returns(self: Any, ctx: Any, **kw: Any) -> None:
            return None
        logger.RequestLogger.log_request = returns  # type: ignore[method-assign]
        return
    warm: list[tuple[Any, dict[str, Any]]] = []
    dropped = _Dropped()

    def packed(self: Any, ctx: Any, **kw: Any) -> None:
        if where == "pack-warm":
            if not warm:
                warm.append((ctx, kw))
            ctx, kw = warm[0]
        ring, self.buffer = self.buffer, dropped
        try:
            log_request(self, ctx, **kw)
            if where == "pack-twice":
                log_request(self, ctx, **kw)
        finally:
            self.buffer = ring
    logger.RequestLogger.log_request = packed  # type: ignore[method-assign]


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in CUTS:
        sys.exit(f"usage: log_cut.py {{{','.join(CUTS)}}} serve --config FILE")
    cut(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
