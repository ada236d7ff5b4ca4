"""What chDB's inserts, merges and reads cost, by body size, with Wide parts against Compact ones.

    .venv/bin/python benchmarks/micro/bench_chdb_parts.py [--bodies 512,1024,2048,4096] [--reps 3] [--dir D]

A MergeTree part is Wide (a file per column and subcolumn) or Compact (one data file), chosen by
its uncompressed size against ``min_bytes_for_wide_part``: 10 MiB by default, 256 MiB in fastgw's
schema. The exporter inserts 5,000 rows at a time (``exporter.WRITE_CHUNK``): about 9 MiB with
1 KB of bodies a row and 15 MiB with 2 KB, so the default puts its parts on either side of the line
by body size.

Per body size and layout, alternated, each into a fresh chDB folder, pinned to core 1: the
benchmark's realistic records (``log_records.py``) enriched and encoded as the exporter does, then
inserted in blocks of ``--rows`` under a deduplication token each, as the exporter inserts, with
merges stopped. Then three reads of those parts (best of 5, wall time), then one merge of them all
(``OPTIMIZE ... FINAL``; the merged part is Compact under 256 MiB in fastgw's layout, Wide in the
default one, which merges a Wide part column by column). Insert and merge are CPU time of the
whole process (chDB's threads included) per row.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import clickhouse_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from log_records import make_records  # noqa: E402

from fastgw._native import nativeblock  # noqa: E402
from fastgw.requestlog import schema  # noqa: E402
from fastgw.requestlog.enrich import Enricher  # noqa: E402
from fastgw.requestlog.prices import PriceTable  # noqa: E402
from fastgw.requestlog.record import decode_record  # noqa: E402
from fastgw.requestlog.sinks.clickhouse import _BLOCK_SPECS, INSERT_SETTINGS  # noqa: E402

LAYOUTS = {
    "default (Wide from 10 MiB)": tuple(s for s in schema.REQUESTS.settings if s[0] != "min_bytes_for_wide_part"),
    "fastgw (Wide from 256 MiB)": schema.REQUESTS.settings,
}
READS = {
    "totals by provider and model": "SELECT provider, model_served, count(), sum(prompt_tokens), sum(cost_nanousd) "
                                    "FROM fastgw.requests GROUP BY provider, model_served",
    "one row by id": "SELECT status, total_us FROM fastgw.requests WHERE request_id = '{id}'",
    "every response body": "SELECT sum(length(response_body)) FROM fastgw.requests",
}


def blocks_for(body_bytes: int, rows: int, inserts: int) -> list[bytes]:
    enricher = Enricher(PriceTable.load(None))
    records = make_records(rows * inserts, body_bytes=body_bytes)
    table_rows = [enricher.row(decode_record(r)) for r in records]
    spec = _BLOCK_SPECS["requests"]
    return [nativeblock.encode_block(spec, table_rows[i:i + rows]) for i in range(0, len(table_rows), rows)]


def parts_of(client: Any) -> dict[str, int]:
    return dict(client.query("SELECT part_type, count() FROM system.parts WHERE database = 'fastgw' "
                             "AND table = 'requests' AND active GROUP BY part_type").result_rows)


def run_layout(blocks: list[bytes], rows: int, settings: tuple[tuple[str, int], ...], where: str | None) -> dict[str, Any]:
    table = dataclasses.replace(schema.REQUESTS, settings=settings)
    names = [c.name for c in table.insert_columns]
    total = rows * len(blocks)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-parts-", dir=where) as tmp:
        client = clickhouse_connect.get_client(interface="chdb", path=os.path.join(tmp, "chdb"))
        try:
            client.command(schema.create_database_sql("fastgw"))
            client.command(schema.create_table_sql(table))
            client.command("SYSTEM STOP MERGES fastgw.requests")
            started = time.process_time()
            for i, block in enumerate(blocks):
                client.raw_insert("fastgw.requests", names, insert_block=block, fmt="Native",
                                  settings=dict(INSERT_SETTINGS, insert_deduplicate=1, insert_deduplication_token=f"bench-{i}"))
            out["insert_us"] = (time.process_time() - started) / total * 1e6
            out["parts"] = parts_of(client)
            out["files"] = sum(len(files) for _, _, files in os.walk(tmp))
            some_id = client.query(f"SELECT request_id FROM fastgw.requests LIMIT 1 OFFSET {total // 2}").result_rows[0][0]
            for name, sql in READS.items():
                best = float("inf")
                for _ in range(5):
                    t0 = time.perf_counter()
                    client.query(sql.format(id=some_id))
                    best = min(best, time.perf_counter() - t0)
                out[name] = best * 1e3
            client.command("SYSTEM START MERGES fastgw.requests")
            started = time.process_time()
            client.command("OPTIMIZE TABLE fastgw.requests FINAL")
            out["merge_us"] = (time.process_time() - started) / total * 1e6
            out["merged"] = parts_of(client)
        finally:
            client.close()
    return out


def filesystem(path: str) -> str:
    """The type of the file system ``path`` is on, from /proc/mounts (the longest mount point that holds it)."""
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1]
                if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return kind


def cell(values: list[float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({', '.join(fmt.format(v) for v in values)})"


def parts_text(parts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in parts.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bodies", default="512,1024,2048,4096", help="bytes of request and response body a record")
    ap.add_argument("--rows", type=int, default=5000, help="rows per insert (the exporter's WRITE_CHUNK)")
    ap.add_argument("--inserts", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", help="where the chDB folders go (default: the system's temporary folder); "
                                  "creating a file costs what the file system makes it cost")
    args = ap.parse_args()
    os.sched_setaffinity(0, {1})
    where = args.dir or tempfile.gettempdir()
    print(f"{args.inserts} inserts of {args.rows} rows into a fresh folder in {where} ({filesystem(where)}), "
          f"core 1; medians of {args.reps} alternated runs, each run in parentheses")
    run_layout(blocks_for(1024, 500, 2), 500, schema.REQUESTS.settings, args.dir)  # chDB's first start in this process
    results: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for body in (int(b) for b in args.bodies.split(",")):
        blocks = blocks_for(body, args.rows, args.inserts)
        results[body] = {name: [] for name in LAYOUTS}
        for _ in range(args.reps):
            for name, settings in LAYOUTS.items():
                results[body][name].append(run_layout(blocks, args.rows, settings, args.dir))
    for figure, key in (("insert CPU, µs a row", "insert_us"), ("merge CPU (all parts into one), µs a row", "merge_us")):
        print(f"\n{figure}\n")
        print(f"| body bytes | {' | '.join(LAYOUTS)} | parts, {' / '.join(('default', 'fastgw'))} |")
        print("|---:|---:|---:|---|")
        for body, by_layout in results.items():
            runs = [by_layout[name] for name in LAYOUTS]
            parts_key = "parts" if key == "insert_us" else "merged"
            parts = " / ".join(parts_text(r[-1][parts_key]) + (f", {r[-1]['files']} files" if key == "insert_us" else "")
                               for r in runs)
            print(f"| {body} | {' | '.join(cell([x[key] for x in r]) for r in runs)} | {parts} |")
    print("\nreads of the inserted parts, before the merge, ms (best of 5 a run)\n")
    print(f"| body bytes | read | {' | '.join(LAYOUTS)} |")
    print("|---:|---|---:|---:|")
    for body, by_layout in results.items():
        for read in READS:
            print(f"| {body} | {read} | {' | '.join(cell([x[read] for x in by_layout[name]]) for name in LAYOUTS)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
