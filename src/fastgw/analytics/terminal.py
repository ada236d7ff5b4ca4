"""``fastgw stats`` and ``fastgw tail``: the admin API, printed for a terminal.

Both go through the admin server rather than the log store: the exporter holds the chDB folder
(chDB lets one process open it), and going through the API means the terminal shows exactly what
the dashboard shows.

``tail`` follows the list oldest-first from a watermark. A row is logged when its request ends,
but sorted by when it started, so each poll looks back ``--lag`` seconds before the newest row
seen and skips the ids it already printed: a request that ran longer than the lag is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, TextIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

import orjson

BREAKDOWNS = ("model", "provider", "user", "key", "property")
SEEN_MAX = 50_000


class AdminUnavailable(Exception):
    """The admin API could not answer; the message says why, for the terminal."""


class AdminClient:
    def __init__(self, base_url: str, key: str = "", timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path + ("?" + urlencode(params, doseq=True) if params else "")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.key}"} if self.key else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return orjson.loads(resp.read())
        except HTTPError as exc:
            with exc:
                try:
                    message = orjson.loads(exc.read())["error"]["message"]
                except (orjson.JSONDecodeError, KeyError, TypeError):  # not our JSON: a proxy's page
                    message = exc.reason
            raise AdminUnavailable(f"{url}: {exc.code} {message}") from None
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminUnavailable(f"cannot reach the admin server at {self.base_url} ({reason}); "
                                   "is `fastgw serve` running with logging and admin enabled?") from None


# --- command line ------------------------------------------------------------------------------

def add_parsers(sub: Any) -> None:
    stats = sub.add_parser("stats", help="print a summary and breakdowns of the request log")
    _admin_args(stats)
    stats.add_argument("--since", default="1h", help="a duration back from now (15m, 1h, 7d) or an ISO time")
    stats.add_argument("--until", help="the end of the range (default now)")
    stats.add_argument("--top", type=int, default=10, help="rows per breakdown")
    stats.add_argument("--json", action="store_true", help="print the API's JSON instead of tables")
    tail = sub.add_parser("tail", help="follow the request log live (Ctrl-C to stop)")
    _admin_args(tail)
    tail.add_argument("-n", type=int, default=10, help="requests of the last hour to show first")
    tail.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    tail.add_argument("--lag", type=float, default=120.0,
                      help="seconds to look back for requests logged late (long streams)")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")


def _admin_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin", help="admin server URL (default: from --config, else http://127.0.0.1:8788)")
    parser.add_argument("--admin-key", help="admin key (default: $FASTGW_ADMIN_KEY, else from --config)")
    parser.add_argument("--config", "-c", help="the gateway's config file, to find the admin server")


def client_for(args: argparse.Namespace) -> AdminClient:
    url, key = args.admin, args.admin_key or os.environ.get("FASTGW_ADMIN_KEY", "")
    if args.config and (url is None or not key):
        from fastgw.config import load

        admin = load(args.config).admin
        host = "127.0.0.1" if admin.host in ("0.0.0.0", "::", "") else admin.host
        url = url or f"http://{host}:{admin.port}"
        key = key or admin.key
    return AdminClient(url or "http://127.0.0.1:8788", key)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        client = client_for(args)
        if args.command == "stats":
            print_stats(client, args, out)
        else:
            follow(client, args, out)
    except AdminUnavailable as exc:
        print(f"fastgw: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


# --- stats -------------------------------------------------------------------------------------

def print_stats(client: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    rng = {"since": args.since, **({"until": args.until} if args.until else {})}
    summary = client.get("/api/v1/summary", rng)
    groups = {d: client.get(f"/api/v1/breakdown/{d}", {**rng, "limit": args.top}) for d in BREAKDOWNS}
    if args.json:
        out.write(orjson.dumps({"summary": summary, "breakdowns": groups}, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out.write(summary_text(summary) + "\n")
    for dimension, data in groups.items():
        if data["groups"]:
            label = "property name" if dimension == "property" else dimension
            out.write(f"\nBy {label}\n{table(label, data['groups'])}\n")


def summary_text(s: dict[str, Any]) -> str:
    r, t, lat = s["range"], s["tokens"], s["latency_ms"]
    return "\n".join([
        f"{r['since']} → {r['until']}",
        (f"requests {s['requests']:,}   errors {s['errors']:,} ({s['error_rate']:.1%})   "
         f"cost ${s['cost_usd']:.4f}" + (f" (+{s['unpriced']:,} unpriced)" if s["unpriced"] else "")),
        (f"tokens {t['total']:,} (prompt {t['prompt']:,}, completion {t['completion']:,}, "
         f"cache read {t['cache_read']:,})"),
        (f"cache hits {s['cache_hits']:,} (hit rate {s['cache_hit_rate']:.1%}), saved ${s['cache_saved_usd']:.4f}   "
         f"rate-limited {s['rate_limited']:,}   budget refusals {s['budget_refused']:,}"),
        f"latency ms   p50 {_num(lat['p50'])}   p95 {_num(lat['p95'])}   p99 {_num(lat['p99'])}",
    ])


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def table(label: str, groups: list[dict[str, Any]]) -> str:
    head = [label, "requests", "errors", "cost USD", "tokens", "cache hits", "p50 ms", "p95 ms"]
    rows = [[g["key"] or "(none)", f"{g['requests']:,}", f"{g['errors']:,}", f"{g['cost_usd']:.4f}",
             f"{g['tokens']:,}", f"{g['cache_hits']:,}", _num(g["latency_ms"]["p50"]),
             _num(g["latency_ms"]["p95"])] for g in groups]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = []
    for row in [head, *rows]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# --- tail --------------------------------------------------------------------------------------

def follow(client: AdminClient, args: argparse.Namespace, out: TextIO) -> None:
    seen: OrderedDict[str, None] = OrderedDict()
    first = client.get("/api/v1/requests", {"since": "1h", "limit": max(1, min(args.n, 500))})["items"] if args.n else []
    for item in reversed(first):
        _emit(item, seen, args.json, out)
    # Everything already in the look-back window counts as seen: only what is logged from now on
    # is printed (besides the -n above).
    newest = datetime.now().astimezone()
    for item in _pages(client, newest - timedelta(seconds=args.lag)):
        _remember(item["request_id"], seen)
    while True:
        time.sleep(args.interval)
        for item in _pages(client, newest - timedelta(seconds=args.lag)):
            if item["request_id"] not in seen:
                newest = max(newest, _emit(item, seen, args.json, out))


def _pages(client: AdminClient, since: datetime) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {"since": since.isoformat(), "order": "asc", "limit": 500}
    while True:
        page = client.get("/api/v1/requests", params)
        yield from page["items"]
        if page["next_cursor"] is None:
            return
        params["cursor"] = page["next_cursor"]


def _remember(request_id: str, seen: OrderedDict[str, None]) -> None:
    seen[request_id] = None
    while len(seen) > SEEN_MAX:
        seen.popitem(last=False)


def _emit(item: dict[str, Any], seen: OrderedDict[str, None], as_json: bool, out: TextIO) -> datetime:
    _remember(item["request_id"], seen)
    out.write((orjson.dumps(item).decode() if as_json else line(item)) + "\n")
    out.flush()
    return datetime.fromisoformat(item["created_at"])


def line(i: dict[str, Any]) -> str:
    cost = "-" if i["cost_usd"] is None else f"${i['cost_usd']:.5f}"
    target = f"{i['provider']}/{i['model']}" if i["provider"] else i["model"] or i["path"]
    extra = " ".join(x for x in (i["cache_status"] and f"cache={i['cache_status']}",
                                 i["user_id"] and f"user={i['user_id']}", i["error_type"]) if x)
    return (f"{i['created_at'][11:23]}  {i['status']:>3}  {target:<32}  {i['total_ms']:>9.1f} ms  "
            f"{i['prompt_tokens']:>6}+{i['completion_tokens']:<6} {cost:>10}  {i['request_id']}  {extra}").rstrip()
