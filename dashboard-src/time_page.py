"""The dashboard's own API timings, as a browser opening it sees them, on a big request log.

    python benchmarks/bench_admin.py --rows 1000000 --keep /tmp/fastgw-1m    # seeds the folder
    python dashboard-src/time_page.py --chdb /tmp/fastgw-1m [--repeat 5]

Starts an AdminServer on the chDB folder, opens each view in headless chromium (Debian's, through
its chromedriver) ``--repeat`` times after one warm-up, and prints per view the median time until
the view was drawn and the median of each API call the page made (``window.fastgwTimings``),
as a markdown table. A developer tool, not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from fastgw.analytics.admin_server import AdminServer
from fastgw.config import AdminConfig


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + "/api/v1" + path, timeout=120) as resp:
        return json.loads(resp.read())


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def time_view(driver: webdriver.Chrome, url: str) -> tuple[float, float | None, list[dict[str, Any]]]:
    driver.get("about:blank")
    driver.get(url)
    WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready"))
    assert driver.execute_script("return document.body.dataset.ready") != "error", url
    ready = driver.execute_script("return performance.getEntriesByName('fastgw:ready')[0].startTime")
    # The overview marks when its header numbers and charts were drawn (they do not wait for the rest).
    first = driver.execute_script("const m = ['fastgw:numbers', 'fastgw:charts'].map((n) => performance.getEntriesByName(n)[0]);"
                                  "return m.every(Boolean) ? Math.max(...m.map((e) => e.startTime)) : null")
    return ready, first, driver.execute_script("return window.fastgwTimings")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chdb", required=True, help="a chDB folder with fastgw.requests")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    server = AdminServer(AdminConfig(port=0), f"chdb://{args.chdb}")
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    session = api(base, "/breakdown/session?since=7d&limit=1")["groups"]
    sample = None
    if session:
        rid = api(base, f"/requests?since=7d&limit=1&session={quote(session[0]['key'])}")["items"][0]["request_id"]
        sample = (rid, session[0]["key"])
    views = {"overview 7d": "/#/overview?since=7d", "overview 24h": "/#/overview?since=24h",
             "request log 7d": "/#/requests?since=7d",
             "request log, model + errors": "/#/requests?since=7d&model=gpt-4o&status=error",
             "sessions 7d": "/#/sessions?since=7d"}
    if sample:
        views["request detail"] = f"/#/request/{sample[0]}?since=7d"
        views["session tree"] = f"/#/session/{sample[1]}?since=7d"
    driver = browser()
    try:
        print("| view | drawn (median ms from navigation) | numbers and charts drawn | API calls (median ms each) |\n"
              "| --- | ---: | ---: | --- |")
        for name, path in views.items():
            drawn, firsts, calls = [], [], defaultdict(list)
            for i in range(args.repeat + 1):
                ready, first, timings = time_view(driver, base + path)
                if i:  # the first is the warm-up
                    drawn.append(ready)
                    if first is not None:
                        firsts.append(first)
                    seen: dict[str, int] = defaultdict(int)
                    for t in timings:  # in the order they finished; a path may come twice
                        seen[t["path"]] += 1
                        calls[f"{t['path']} ({seen[t['path']]})"].append(t["ms"])
            each = ", ".join(f"{k.removesuffix(' (1)')} {statistics.median(v):.0f}" for k, v in sorted(calls.items()))
            shown = f"{statistics.median(firsts):.0f}" if firsts else ""
            print(f"| {name} | {statistics.median(drawn):.0f} | {shown} | {each} |")
    finally:
        driver.quit()
        server.stop()


if __name__ == "__main__":
    main()
