"""The exporter's session, and what it does to the gateway's P99 when the clients run in another.

  .venv/bin/python benchmarks/bench_exporter_session.py [--reps 8]

Why: Linux schedules sessions as groups (autogroups) for processes outside a cpu cgroup: it
shares a core between sessions first, then between the processes of each. SCHED_IDLE ranks the
exporter only within its session, so an exporter left in the session of `fastgw serve` competes
as an equal with an app started elsewhere (another shell, another service). bench_logging.py
starts the gateway in its client's session, where this never shows. Here every gateway is a
session of its own, as a service is, while the client (loadgen) and the provider stand-in
(nginx) run on core 1 in this script's session, with the exporter:

- off: logging off;
- on, own session: the default since exporter_own_session (the exporter leads a session of its
  own at autogroup nice 19);
- on, inherited session: ``logging.exporter_own_session: false``, the exporter in the session of
  `fastgw serve`, as before.

--client-session: every gateway in this script's session instead, with the client and nginx, as
bench_logging.py runs it: what the exporter's own session costs where its old one was the
client's too (SCHED_IDLE inside one group, against nice 19 as a group of its own).

Each repetition runs every variant (order rotated) at 16 closed-loop connections, 2,000 and 6,000
requests a second open loop, 2.5 s each, with 1 KB of bodies; each "on" variant starts from an
idle exporter. Printed as bench_exporter_placement.py prints: medians of the P99s against off
with a sign test, then the worker's CPU per request in the same runs.

--catch-up: the exporter busy, as after a sink outage. Before each measured run (2,000 requests
a second for 1 s, no warm-up) the exporter is stopped (SIGSTOP) while 6,000 a second go through
for 3 s, a backlog of 18,000 records that fits the rings; it is let go as the measured run
starts, and drains the backlog during it, as fast as its core lets it (about half a second when
it has the core). "off" gets the same 3 s of load first.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_logging as bl  # noqa: E402
import run_bench as rb  # noqa: E402
from bench_exporter_placement import Runs  # noqa: E402

VARIANTS = {"off": "off", "on, own session": "on", "on, inherited session": "inherited"}
CATCH_UP_LOAD = ["-c", "16", "--rate", "2000"]


def backlog(g: bl.Gateway, lg: list[str]) -> None:
    """3 s at 6,000 requests a second with the exporter stopped; it resumes right after."""
    if g.exporter:
        os.kill(g.exporter, signal.SIGSTOP)
    try:
        rb.run_loadgen(g.url(), "-c", "32", "--rate", "6000", "-d", "3", "--warmup", "0", *lg)
    finally:
        if g.exporter:
            os.kill(g.exporter, signal.SIGCONT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--catch-up", action="store_true", help="measure while the exporter drains a backlog")
    ap.add_argument("--client-session", action="store_true", help="gateways in the client's session")
    args = ap.parse_args()
    if why := rb.missing_tools("nginx", "wrk", "taskset", "chrt"):
        print(why, file=sys.stderr)
        return 2
    bl.write_wrk_lua()
    with bl.gateway_stage("fastgw-bench-session") as (tmp, procs, port):
        gws = {}
        for variant, name in VARIANTS.items():
            (tmp / name).mkdir()
            gws[variant] = bl.Gateway(name, tmp, procs, port, own_session=not args.client_session)
        for variant, g in gws.items():  # once the exporters have lowered their priority (after their sinks open)
            if g.exporter:
                bl.wait_idle([g.exporter])
            groups = {pid: Path(f"/proc/{pid}/autogroup").read_text().strip() for pid in (g.worker, g.exporter) if pid}
            bl.log(f"{variant}: worker {g.worker}, exporter {g.exporter}; autogroups {groups}; "
                   f"this script's {Path('/proc/self/autogroup').read_text().strip()}")
        runs = (Runs(list(VARIANTS), {"2000/s, exporter catching up": CATCH_UP_LOAD}, seconds=1.0, warmup=0.0)
                if args.catch_up else Runs(list(VARIANTS)))
        for rep in range(args.reps):
            for variant in rb.rotate(list(VARIANTS), rep):
                g = gws[variant]
                if g.exporter:
                    bl.wait_idle([g.exporter])
                if args.catch_up:
                    backlog(g, runs.lg)
                runs.measure(rep, variant, g)
        runs.report(args.reps)
        runs.compare("on, inherited session", "on, own session")
    return 0


if __name__ == "__main__":
    sys.exit(main())
