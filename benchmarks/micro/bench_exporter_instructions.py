#!/usr/bin/env python3
"""Instructions the exporter spends turning one ring record into a row, counted by callgrind.

    .venv/bin/python benchmarks/micro/bench_exporter_instructions.py [--records 4000]

Why: bench_exporter_stages.py times each stage, and on this shared machine a stage's time moves by
20% between runs, more than most single changes save. Callgrind counts the instructions instead,
the same for the same code and records whatever else runs.

What: ``Enricher.row_of`` (decode the packed record, read usage, price it, make the row) over
log_records.py's records (1 KB of bodies, a quarter of them streams), under
``valgrind --tool=callgrind`` with collection only inside ``row_of``. Reports instructions a record
for ``row_of`` and the compiled functions it calls, inclusive.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FUNCTIONS = {  # Cython's wrapper names, the function's index in its module left open
    "Enricher.row_of": r"6enrich_\d+Enricher_\d+row_of\b",
    "record.decode_for_row": r"6record_\d+decode_for_row\b",
    "recordwire.unpack_meta": r"10recordwire_\d+unpack_meta\b",
    "usage.extract_usage": r"5usage_\d+extract_usage\b",
    "prices.PriceTable.cost": r"6prices_\d+PriceTable_\d+cost\b",
    "enrich.requested_model": r"6enrich_\d+requested_model\b",
}

CHILD = """
import sys
sys.path.insert(0, {bench!r}); sys.path.insert(0, {src!r})
from log_records import make_records
from fastgw.requestlog.enrich import Enricher
from fastgw.requestlog.prices import PriceTable
records = make_records({n}, 1024)
enricher = Enricher(PriceTable.load())
for r in records:
    enricher.row_of(r)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=4000)
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        print("valgrind is missing (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fastgw-cg-exporter-") as d:
        out = Path(d) / "callgrind.out"
        script = CHILD.format(bench=str(ROOT / "benchmarks"), src=str(ROOT / "src"), n=args.records)
        subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=__pyx_pw_6fastgw_10requestlog_6enrich_*Enricher_*row_of",
                        f"--callgrind-out-file={out}", sys.executable, "-c", script],
                       check=True, capture_output=True)
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)], check=True,
                              capture_output=True, text=True).stdout
    print(f"{args.records} records of log_records.py (1 KB of bodies), instructions a record, inclusive:")
    for name, symbol in FUNCTIONS.items():
        best = 0
        pattern = re.compile(r"__pyx_pw_6fastgw_\w*?" + symbol)
        for line in text.splitlines():
            if pattern.search(line):
                m = re.match(r"\s*([\d,]+)", line)
                if m:
                    best = max(best, int(m.group(1).replace(",", "")))
        print(f"  {name:26s} {best / args.records:10,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
