"""``fastgw keys create|list|revoke``: manage gateway keys in the store config names (keys.backend).

``create`` prints the new key once, alone on stdout (so ``KEY=$(fastgw keys create ...)`` works);
only its hash is stored, so a lost key cannot be shown again, only revoked and replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict
from typing import Any

import orjson

from fastgw.config import Config, ConfigError, load
from fastgw.keys.budget import NANO_PER_USD, period_cells
from fastgw.keys.record import Budget, KeyRecord
from fastgw.keys.store import KeyStore, StoreError, open_store
from fastgw.keys.token import hint, key_hash, key_id_for, new_key
from fastgw.ratelimit.policy import PolicyError, parse_policy


class UsageError(Exception):
    """A bad argument: printed as ``fastgw keys: <message>``, exit status 2."""


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage gateway keys (fgw-...)")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True, help="a unique name among active keys")
    create.add_argument("--team", help="the team whose budget (keys.teams) this key shares")
    create.add_argument("--model", action="append", default=[], dest="models",
                        help="a model it may use: exact or a glob (gpt-4o*, anthropic/*); repeat; none: all")
    create.add_argument("--ratelimit", action="append", default=[],
                        help="a Helicone policy (quota;w=seconds[;u=request|cents][;s=...]) for this key; repeat")
    create.add_argument("--budget-day", type=float, help="USD per UTC calendar day")
    create.add_argument("--budget-month", type=float, help="USD per UTC calendar month")
    create.add_argument("--budget-total", type=float, help="USD in total")
    create.add_argument("--credential", action="append", default=[], dest="credentials",
                        help="a config credentials: entry this key's requests use upstream; repeat")
    lst = ksub.add_parser("list", help="list keys, their limits and spend")
    revoke = ksub.add_parser("revoke", help="revoke a key by key id or name")
    revoke.add_argument("key", help="key_... id, or the name of an active key")
    for p in (create, lst, revoke):
        p.add_argument("--config", "-c", help="YAML config file (names the store: keys.backend)")
        p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"fastgw: {exc}", file=sys.stderr)
        return 2
    command = {"create": _create, "list": _list, "revoke": _revoke}[args.keys_command]
    try:
        return asyncio.run(_with_store(config, command, args))
    except UsageError as exc:
        print(f"fastgw keys: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"fastgw keys: {exc}", file=sys.stderr)
        return 1


async def _with_store(config: Config, command: Any, args: argparse.Namespace) -> int:
    store = open_store(config.keys.backend, timeout=5.0)
    try:
        return int(await command(config, store, args))
    finally:
        await store.close()


async def _create(config: Config, store: KeyStore, args: argparse.Namespace) -> int:
    budget = Budget(args.budget_day, args.budget_month, args.budget_total)
    for period, usd in budget.caps():
        if not 0 <= usd < 1e9:
            raise UsageError(f"--budget-{period} must be a USD amount of 0 or more")
    for text in args.ratelimit:
        try:
            parse_policy(text)
        except PolicyError as exc:
            raise UsageError(f"--ratelimit {text!r}: {exc.reason}") from None
    for name in args.credentials:
        if name not in config.credentials:
            known = ", ".join(sorted(config.credentials)) or "none"
            raise UsageError(f"--credential {name!r} is not in the config's credentials: (defined: {known})")
    if any(r.name == args.name and r.revoked_at is None for r in await store.all()):
        raise UsageError(f"an active key is already named {args.name!r}")
    if args.team and args.team not in config.keys.teams:
        print(f"fastgw keys: note: team {args.team!r} has no budget in keys.teams", file=sys.stderr)
    key = new_key()
    digest = key_hash(key)
    record = KeyRecord(digest, key_id_for(digest), args.name, hint(key), time.time(), args.team, tuple(args.models),
                       tuple(args.ratelimit), budget, tuple(args.credentials))
    await store.put(record)
    if args.json:
        print(orjson.dumps({"key": key, **_public(record)}).decode())
    else:
        print(key)
        print(f"created {record.key_id} ({args.name}); the key above is shown only this once", file=sys.stderr)
    return 0


async def _list(config: Config, store: KeyStore, args: argparse.Namespace) -> int:
    records = await store.all()
    now = time.time()
    rows = []
    for r in records:
        row = {**_public(r), "spend_usd": await _spend(store, f"key:{r.key_id}", now)}
        if r.team is not None:
            row["team_spend_usd"] = await _spend(store, f"team:{r.team}", now)
        rows.append(row)
    if args.json:
        print(orjson.dumps(rows).decode())
        return 0
    print(f"{'KEY ID':21} {'NAME':16} {'HINT':12} {'TEAM':12} {'STATUS':8} {'SPENT TODAY/MONTH/TOTAL (USD)':32} BUDGETS")
    for row in rows:
        s, b = row["spend_usd"], row["budget"]
        spent = f"{s['day']:.4f}/{s['month']:.4f}/{s['total']:.4f}"
        budgets = " ".join(f"{p}={v}" for p, v in b.items() if v is not None) or "-"
        status = "revoked" if row["revoked_at"] else "active"
        print(f"{row['key_id']:21} {row['name'][:16]:16} {row['hint']:12} {(row['team'] or '-')[:12]:12} {status:8} "
              f"{spent:32} {budgets}")
    for team, budget in config.keys.teams.items():
        s = await _spend(store, f"team:{team}", now)
        caps = " ".join(f"{p}={v}" for p, v in (("day", budget.day), ("month", budget.month), ("total", budget.total))
                        if v is not None) or "-"
        print(f"team {team}: spent {s['day']:.4f}/{s['month']:.4f}/{s['total']:.4f} USD today/month/total; budgets {caps}")
    return 0


async def _spend(store: KeyStore, scope: str, now: float) -> dict[str, float]:
    """A scope's counters for the periods containing ``now``, in USD. Only budgeted scopes are
    charged (the log has every request's cost), so an unbudgeted one reads 0."""
    cells = period_cells(scope, now)
    spent = await store.read([cells[p][0] for p in ("day", "month", "total")])
    return {p: n / NANO_PER_USD for p, n in zip(("day", "month", "total"), spent)}


async def _revoke(config: Config, store: KeyStore, args: argparse.Namespace) -> int:
    records = await store.all()
    found = [r for r in records if r.key_id == args.key] or [
        r for r in records if r.name == args.key and r.revoked_at is None]
    if not found:
        raise UsageError(f"no key with id {args.key!r} and no active key named {args.key!r}")
    record = found[0]
    if record.revoked_at is None:
        record = KeyRecord(**{**_fields(record), "revoked_at": time.time()})
        await store.put(record)
    ttl = config.keys.cache_ttl
    print(f"revoked {record.key_id} ({record.name}); workers that cached it stop accepting it within {ttl:g}s",
          file=sys.stderr)
    if args.json:
        print(orjson.dumps(_public(record)).decode())
    return 0


def _fields(record: KeyRecord) -> dict[str, Any]:
    return {f: getattr(record, f) for f in record.__dataclass_fields__}


def _public(record: KeyRecord) -> dict[str, Any]:
    """The record as shown: everything but the hash (which is not secret, but is of no use to a reader)."""
    data = asdict(record)
    data.pop("key_hash")
    return data
