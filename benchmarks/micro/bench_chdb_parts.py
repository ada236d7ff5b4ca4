"""What chDB's insert costs a record, by body size, with Wide parts against Compact ones.

    .venv/bin/python benchmarks/micro/bench_chdb_parts.py [--bodies 512,1024,2048,4096] [--reps 3]

A MergeTree part is Wide (a file per column and subcolumn) or Compact (one data file), chosen by
its uncompressed size against ``min_bytes_for_wide_part``: 10 MiB by default, 256 MiB in fastgw's
schema. The exporter inserts 5,000 rows at a time (``exporter.WRITE_CHUNK``), about 10 MiB with
1 KB of bodies a row, so the default puts its parts on either side of the line by body size.

Per body size and layout, alternated, each into a fresh chDB folder: the benchmark's realistic
records (``log_records.py``) enriched and encoded as the exporter does, then inserted in blocks of
``--rows``, pinned to core 1. CPU time of the whole process (chDB's threads included) from the
first insert to the last, per row, then the parts' types and the files in the folder.
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


def blocks_for(body_bytes: int, rows: int, inserts: int) -> list[bytes]:
    enricher = Enricher(PriceTable.load(None))
    records = make_records(rows * inserts, body_bytes=body_bytes)
    table_rows = [enricher.row(decode_record(r)) for r in records]
    spec = _BLOCK_SPECS["requests"]
    return [nativeblock.encode_block(spec, table_rows[i:i + rows]) for i in range(0, len(table_rows), rows)]


def insert_cpu(blocks: list[bytes], rows: int, settings: tuple[tuple[str, int], ...],
               where: str | None = None) -> tuple[float, dict[str, int], int]:
    table = dataclasses.replace(schema.REQUESTS, settings=settings)
    names = [c.name for c in table.insert_columns]
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-parts-", dir=where) as tmp:
        client = clickhouse_connect.get_client(interface="chdb", path=os.path.join(tmp, "chdb"))
        try:
            client.command(schema.create_database_sql("fastgw"))
            client.command(schema.create_table_sql(table))
            client.command("SYSTEM STOP MERGES fastgw.requests")  # the exporter's insert, not its merges
            started = time.process_time()
            for block in blocks:
                client.raw_insert("fastgw.requests", names, insert_block=block, fmt="Native",
                                  settings=dict(INSERT_SETTINGS))
            cpu = time.process_time() - started
            parts = dict(client.query("SELECT part_type, count() FROM system.parts WHERE database = 'fastgw' "
                                      "AND table = 'requests' AND active GROUP BY part_type").result_rows)
        finally:
            client.close()
        files = sum(len(names) for _, _, names in os.walk(tmp))
    return cpu / (rows * len(blocks)) * 1e6, parts, files


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


def main() -> None:
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
    print(f"chDB insert CPU per row (µs, all threads, core 1), {args.rows} rows an insert, {args.inserts} inserts, "
          f"median of {args.reps} alternated runs, in {where} ({filesystem(where)})")
    print(f"| body bytes | {' | '.join(LAYOUTS)} | parts | files in the folder |")
    print("|---:|---:|---:|---|---|")
    insert_cpu(blocks_for(1024, 500, 2), 500, schema.REQUESTS.settings)  # chDB's first start in this process
    for body in (int(b) for b in args.bodies.split(",")):
        blocks = blocks_for(body, args.rows, args.inserts)
        runs: dict[str, list[float]] = {name: [] for name in LAYOUTS}
        seen: dict[str, tuple[dict[str, int], int]] = {}
        for _ in range(args.reps):
            for name, settings in LAYOUTS.items():
                us, parts, files = insert_cpu(blocks, args.rows, settings, args.dir)
                runs[name].append(us)
                seen[name] = (parts, files)
        cells = " | ".join(f"{statistics.median(runs[name]):.1f} ({', '.join(f'{u:.1f}' for u in runs[name])})"
                           for name in LAYOUTS)
        parts = " / ".join(", ".join(f"{n} {t}" for t, n in seen[name][0].items()) for name in LAYOUTS)
        files = " / ".join(str(seen[name][1]) for name in LAYOUTS)
        print(f"| {body} | {cells} | {parts} | {files} |", flush=True)


if __name__ == "__main__":
    main()
