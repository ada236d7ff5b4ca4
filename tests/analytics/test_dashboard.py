"""The dashboard in a real headless chromium (Debian's, driven by Selenium through the system
chromedriver) against a real ``fastgw serve``: embedded chDB seeded with known rows before the
start, plus real SDK traffic through the mock provider (a stream in a session, a cached answer,
an error, a rate-limit refusal).

Every view must render with data, with numbers checked against the seeded rows (counted here,
not by the API), charts that actually painted their series, and nothing on the browser console.
Each view is saved as a PNG (``FASTGW_SCREENSHOTS=dir`` to choose where; the path is printed),
and the page's own API timings are printed per view.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from fastgw.requestlog.sinks.clickhouse import ClickHouseSink
from fastgw.testing.mock_upstream import MockUpstreamThread
from tests.analytics.seed import feedback_rows, now_ms, seed_rows
from tests.helpers import GatewayProcess, free_port, gateway_config, wait_for_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MSGS = [{"role": "user", "content": "Tell me about the dashboard"}]
LIVE_SESSION = "live-" + uuid.uuid4().hex[:8]


def fmt_count(n: int) -> str:
    return f"{n:,}"


def fmt_usd(v: float) -> str:
    """The page's format.js fmtUSD, rule for rule."""
    if v == 0:
        return "$0"
    a = abs(v)
    if a >= 1000:
        return f"${round(v):,}"
    if a >= 0.1:
        return f"${v:.2f}"
    digits = min(9, 2 - math.floor(math.log10(a)))
    return "$" + f"{v:.{digits}f}".rstrip("0")


class Live:
    """What the test sent through the gateway, to find it again on the page."""

    def __init__(self) -> None:
        self.stream_id = str(uuid.uuid4())
        self.stream_text = ""
        self.requests: Counter[str] = Counter()  # model -> count
        self.errors = 0
        self.rate_limited = 0


def send_traffic(gw: GatewayProcess) -> Live:
    live = Live()
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        session = {"helicone-session-id": LIVE_SESSION, "helicone-session-name": "live agent",
                   "helicone-user-id": "erin", "helicone-property-org": "acme"}
        stream = client.chat.completions.create(
            model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True},
            extra_headers={**session, "helicone-session-path": "/answer", "helicone-request-id": live.stream_id,
                           "x-mock-chunks": "7"})
        pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
        assert len(pieces) == 7  # so the page has several events to assemble
        live.stream_text = "".join(pieces)
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS,
                                       extra_headers={**session, "helicone-session-path": "/answer/check"})
        cached = {"helicone-cache-enabled": "true", "helicone-user-id": "erin"}
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers=cached)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o", messages=MSGS, extra_headers={"x-mock-status": "500"})
        limited = {"helicone-ratelimit-policy": "1;w=60;s=user", "helicone-user-id": "greedy"}
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers=limited)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers=limited)
    live.requests.update({"gpt-4o": 2, "gpt-4o-mini": 5})
    live.errors, live.rate_limited = 2, 1
    return live


class Dashboard:
    def __init__(self, url: str, rows: list[dict[str, Any]], live: Live, shots: Path) -> None:
        self.url, self.rows, self.live, self.shots = url, rows, live, shots
        self.timings_seen = 0  # API calls already printed (the page keeps them all, across views)

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + "/api/v1" + path, timeout=30) as resp:
            return orjson.loads(resp.read())

    @property
    def total(self) -> int:
        return len(self.rows) + sum(self.live.requests.values())

    def model_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter(r["model_served"] or r["model_requested"] for r in self.rows)
        return counts + self.live.requests


@pytest.fixture(scope="module")
def dashboard(mock: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    tmp = tmp_path_factory.mktemp("dashboard")
    data = tmp / "chdb"
    rows = seed_rows(now_ms())
    sink = ClickHouseSink(chdb_path=str(data))  # seeded before the gateway opens the folder
    sink.open()
    sink.write(rows, "seed")
    sink.write(feedback_rows(rows, now_ms()), "seed-feedback")
    sink.close()
    admin_port = free_port()
    gw = GatewayProcess(gateway_config(mock.url, logging={"sink": f"chdb://{data}", "batch_max_age": "200ms"},
                                       admin={"port": admin_port}), tmp)
    try:
        wait_for_port(admin_port, proc=gw.proc)
        live = send_traffic(gw)
        url = f"http://127.0.0.1:{admin_port}"
        board = Dashboard(url, rows, live, Path(os.environ.get("FASTGW_SCREENSHOTS") or tmp / "screenshots"))
        deadline = time.monotonic() + 30
        while board.api("/summary?since=24h")["requests"] < board.total and time.monotonic() < deadline:
            time.sleep(0.2)
        assert board.api("/summary?since=24h")["requests"] == board.total
        board.shots.mkdir(parents=True, exist_ok=True)
        print(f"\ndashboard screenshots in {board.shots}")
        yield board
    finally:
        assert gw.stop() == 0, gw.log()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    assert os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), \
        "Debian's chromium and chromium-driver are needed (scripts/bootstrap test installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,1000", "--force-device-scale-factor=1", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def open_view(browser: webdriver.Chrome, board: Dashboard, hash_: str, ready: str) -> None:
    if browser.current_url.startswith(board.url):  # the marker goes first: hashchange fires later
        browser.execute_script("""
            delete document.body.dataset.ready;
            if (location.hash === "#" + arguments[0]) window.dispatchEvent(new HashChangeEvent("hashchange"));
            else location.hash = arguments[0];""", hash_)
    else:
        browser.get(board.url + "/#" + hash_)
    wait_ready(browser, ready)


def wait_ready(browser: webdriver.Chrome, ready: str) -> None:
    """Until the view ``ready`` is drawn (``error``: until the page gave up and said why)."""
    try:
        WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.body.dataset.ready") in (ready, "error"))
    except TimeoutException:
        raise AssertionError(f"view {ready} never finished: {browser.find_element(By.TAG_NAME, 'body').text}") from None
    state = browser.execute_script("return document.body.dataset.ready")
    assert state == ready, browser.find_element(By.ID, "notice").text


def finish_view(browser: webdriver.Chrome, board: Dashboard, name: str) -> None:
    """No console errors, the screenshot saved, and the view's API timings printed."""
    severe = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not severe, severe
    path = board.shots / f"{name}.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {  # the whole page, not just the window
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1440, "height": min(height, 6000), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    timings = browser.execute_script("return window.fastgwTimings")
    seen, board.timings_seen = board.timings_seen, len(timings)
    if len(timings) < seen:  # a full page load started the list again
        seen = 0
    print(f"{name}: " + ", ".join(f"{t['path']} {t['ms']:.0f} ms" for t in timings[seen:]))


def text(browser: webdriver.Chrome, css: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, css).text


def painted(browser: webdriver.Chrome, card: str, color: str) -> int:
    """Pixels of a series colour on a card's chart canvas: proof the series was drawn, not just the axes."""
    return browser.execute_script("""
        const canvas = document.querySelector(`[data-card="${arguments[0]}"] canvas`);
        if (!canvas || !canvas.width) return -1;
        const [r, g, b] = [1, 3, 5].map((i) => parseInt(arguments[1].slice(i, i + 2), 16));
        const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4) {
            if (px[i + 3] > 200 && Math.abs(px[i] - r) < 40 && Math.abs(px[i + 1] - g) < 40 && Math.abs(px[i + 2] - b) < 40) n++;
        }
        return n;""", card, color)


def test_overview(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    browser.get(dashboard.url + "/")
    wait_ready(browser, "overview")
    seeded_errors = sum(1 for r in dashboard.rows if r["status"] >= 400)
    seeded_limited = sum(1 for r in dashboard.rows if r.get("error_type") == "rate_limit_exceeded")
    seeded_hits = sum(1 for r in dashboard.rows if r.get("cache_status") == "hit")
    assert text(browser, "[data-kpi=requests] .kpi-value") == fmt_count(dashboard.total)
    assert text(browser, "[data-kpi=errors] .kpi-value") == fmt_count(seeded_errors + dashboard.live.errors)
    assert text(browser, "[data-kpi=ratelimited] .kpi-value") == fmt_count(seeded_limited + dashboard.live.rate_limited)
    assert text(browser, "[data-kpi=cache] .kpi-value") == fmt_count(seeded_hits + 1)
    summary = dashboard.api("/summary?since=24h")
    seeded_cost = sum(r["cost_nanousd"] or 0 for r in dashboard.rows) / 1e9
    assert summary["cost_usd"] >= seeded_cost  # the live requests add their real (positive) cost
    assert text(browser, "[data-kpi=cost] .kpi-value") == fmt_usd(summary["cost_usd"])
    seeded_saved = sum(r.get("cache_saved_nanousd", 0) for r in dashboard.rows) / 1e9
    assert summary["cache_saved_usd"] > seeded_saved
    assert text(browser, "[data-kpi=saved] .kpi-value") == fmt_usd(summary["cache_saved_usd"])

    for card, color in [("cost", "#3b6fd8"), ("traffic", "#3b6fd8"), ("traffic", "#d64545"), ("latency", "#2f9e6a"),
                        ("latency", "#d64545"), ("cache", "#2f9e6a"), ("tokens", "#7c5cc4"), ("ratelimited", "#d9901a")]:
        assert painted(browser, card, color) > 20, (card, color)

    # Top models by cost: every model of the seed and the live traffic, with its request count.
    models = {row.find_element(By.CSS_SELECTOR, ".label").text: row.find_elements(By.TAG_NAME, "td")[1].text
              for row in browser.find_elements(By.CSS_SELECTOR, "[data-card=models] tbody tr")}
    assert models == {m: fmt_count(n) for m, n in dashboard.model_counts().items()}
    users = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "[data-card=users] tbody .label")]
    assert {"alice", "bob", "carol", "dave", "erin", "greedy", "(none)"} <= set(users)
    props = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "[data-card=properties] tbody .label")]
    assert set(props) == {"org", "env"}
    finish_view(browser, dashboard, "overview")

    # By count: the models in the order of their request counts, counted from the rows here.
    browser.find_element(By.CSS_SELECTOR, "[data-order=requests]").click()
    wait_ready(browser, "overview")
    by_count = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "[data-card=models] tbody .label")]
    assert by_count == [m for m, _ in dashboard.model_counts().most_common()]
    org_values = {row.find_element(By.CSS_SELECTOR, ".label").text: row.find_elements(By.TAG_NAME, "td")[1].text
                  for row in browser.find_elements(By.CSS_SELECTOR, "[data-card=property-values] tbody tr")}
    expected_orgs = Counter(r["properties"]["org"] for r in dashboard.rows if "org" in r.get("properties", {}))
    expected_orgs["acme"] += 2  # the live session's two requests
    assert org_values == {k: fmt_count(v) for k, v in expected_orgs.items()}
    finish_view(browser, dashboard, "overview-by-count")

    Select(browser.find_element(By.CSS_SELECTOR, "[data-card=property-values] select")).select_by_value("env")
    wait_ready(browser, "overview")
    env_values = {row.find_element(By.CSS_SELECTOR, ".label").text: row.find_elements(By.TAG_NAME, "td")[1].text
                  for row in browser.find_elements(By.CSS_SELECTOR, "[data-card=property-values] tbody tr")}
    expected_env = Counter(r["properties"]["env"] for r in dashboard.rows if "env" in r.get("properties", {}))
    assert env_values == {k: fmt_count(v) for k, v in expected_env.items()}
    finish_view(browser, dashboard, "overview-property-env")


def test_time_range_picker(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    open_view(browser, dashboard, "/overview", "overview")
    browser.find_element(By.CSS_SELECTOR, "[data-since='1h']").click()
    wait_ready(browser, "overview")
    assert "since=1h" in browser.current_url
    # The seed spreads its rows over 6 hours: the last hour holds fewer of them, never more.
    last_hour = int(text(browser, "[data-kpi=requests] .kpi-value").replace(",", ""))
    assert sum(dashboard.live.requests.values()) <= last_hour < dashboard.total
    assert last_hour == dashboard.api("/summary?since=1h")["requests"]
    assert "active" in browser.find_element(By.CSS_SELECTOR, "[data-since='1h']").get_attribute("class")
    finish_view(browser, dashboard, "overview-1h")

    # A custom range: from 3 hours ago to 1 hour ago, typed in the pickers (local time).
    browser.execute_script("""
        const pad = (n) => String(n).padStart(2, "0");
        const local = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
        const form = document.getElementById("range");
        form.from.value = local(new Date(Date.now() - 3 * 3600e3));
        form.to.value = local(new Date(Date.now() - 3600e3));""")
    browser.find_element(By.CSS_SELECTOR, "#range button[type=submit]").click()
    wait_ready(browser, "overview")
    params = dict(p.split("=", 1) for p in browser.current_url.split("?", 1)[1].split("&"))
    since, until = (urllib.parse.unquote(params[k]) for k in ("since", "until"))
    expected = dashboard.api(f"/summary?since={urllib.parse.quote(since)}&until={urllib.parse.quote(until)}")["requests"]
    assert 0 < expected < dashboard.total
    assert text(browser, "[data-kpi=requests] .kpi-value") == fmt_count(expected)
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-since].active")
    finish_view(browser, dashboard, "overview-custom-range")
    browser.find_element(By.CSS_SELECTOR, "[data-since='24h']").click()
    wait_ready(browser, "overview")


def test_an_empty_range_renders_zeros_not_errors(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    """No requests: null percentiles and empty groups must not break the charts or the tables."""
    open_view(browser, dashboard, "/overview?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00Z", "overview")
    assert text(browser, "[data-kpi=requests] .kpi-value") == "0"
    assert text(browser, "[data-kpi=latency] .kpi-value") == "–"
    assert text(browser, "[data-card=models] .empty") == "Nothing in this range."
    assert len(browser.find_elements(By.CSS_SELECTOR, "[data-card] canvas")) == 6
    finish_view(browser, dashboard, "overview-empty")
    open_view(browser, dashboard, "/requests?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00Z", "requests")
    assert text(browser, ".empty") == "No request matches these filters in this range."
    open_view(browser, dashboard, "/overview?since=24h", "overview")


def test_a_refused_filter_is_shown_not_swallowed(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    """A value the API refuses (a bad date in the URL) shows the API's message; the page stays usable."""
    open_view(browser, dashboard, "/overview", "overview")
    browser.execute_script("delete document.body.dataset.ready; location.hash = '#/requests?since=yesterday-ish'")
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.body.dataset.ready") == "error")
    notice = browser.find_element(By.ID, "notice")
    assert notice.is_displayed() and notice.text.startswith("The admin API refused:") and "since" in notice.text
    logged = browser.get_log("browser")  # the 400 itself is the one console line, by the browser
    assert len(logged) == 1 and "status of 400" in logged[0]["message"], logged
    browser.find_element(By.CSS_SELECTOR, "[data-since='6h']").click()
    wait_ready(browser, "requests")
    assert not browser.find_element(By.ID, "notice").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "table.log tbody tr")
    finish_view(browser, dashboard, "requests-6h")


def test_request_log_filters_and_pages(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    open_view(browser, dashboard, "/requests?since=24h", "requests")
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.log tbody tr")) == 50
    browser.find_element(By.CSS_SELECTOR, "button.more").click()
    WebDriverWait(browser, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "table.log tbody tr")) == 100)

    form = browser.find_element(By.ID, "filters")
    form.find_element(By.NAME, "model").send_keys("gpt-4o-mini")
    Select(form.find_element(By.NAME, "status")).select_by_value("error")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_ready(browser, "requests")
    expected = sum(1 for r in dashboard.rows if (r["model_served"] or r["model_requested"]) == "gpt-4o-mini"
                   and r["status"] >= 400) + 1  # the live rate-limit refusal
    rows = browser.find_elements(By.CSS_SELECTOR, "table.log tbody tr")
    assert len(rows) == min(expected, 50)
    for row in rows:
        cells = row.find_elements(By.TAG_NAME, "td")
        assert int(cells[1].text) >= 400 and cells[2].text.startswith("gpt-4o-mini ")
    assert "model=gpt-4o-mini" in browser.current_url and "status=error" in browser.current_url
    finish_view(browser, dashboard, "requests-filtered")

    open_view(browser, dashboard, "/requests?since=24h&q=needle%2042", "requests")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.log tbody tr")
    matching = {str(r["request_id"]) for r in dashboard.rows if "needle 42" in r.get("request_body", "")}
    assert len(matching) == 11  # needle 42 and needle 420..429
    assert {r.get_attribute("data-id") for r in rows} == matching
    finish_view(browser, dashboard, "requests-search")


def test_request_detail_shows_prompt_and_streamed_text(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    open_view(browser, dashboard, f"/requests?since=24h&session={LIVE_SESSION}", "requests")
    browser.find_element(By.CSS_SELECTOR, f"tr[data-id='{dashboard.live.stream_id}']").click()
    wait_ready(browser, "request")
    assert dashboard.live.stream_text
    assert text(browser, "[data-card=prompt] .msg.user .text") == MSGS[0]["content"]
    assert text(browser, "[data-card=response] h2").startswith("Response (streamed, as text)")
    assert text(browser, "[data-card=response] .msg.assistant .text") == dashboard.live.stream_text
    facts = text(browser, ".facts")
    assert LIVE_SESSION in facts and "/answer" in facts and "erin" in facts and "org=acme" in facts
    finish_view(browser, dashboard, "request-detail-stream")

    first = dashboard.rows[0]  # a seeded row with feedback and scores joined in
    open_view(browser, dashboard, f"/request/{first['request_id']}?since=24h", "request")
    facts = text(browser, ".facts")
    assert "positive" in facts and "accuracy 0.75" in facts and "helpful true" in facts
    assert text(browser, "[data-card=prompt] .msg.user .text") == "needle 0"
    finish_view(browser, dashboard, "request-detail-feedback")


def test_session_trace_tree(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    open_view(browser, dashboard, "/sessions?since=24h", "sessions")
    listed = {e.get_attribute("data-session") for e in browser.find_elements(By.CSS_SELECTOR, "tr[data-session]")}
    assert {"s-1", "s-2", "tree-1", LIVE_SESSION} <= listed
    finish_view(browser, dashboard, "sessions")

    browser.find_element(By.CSS_SELECTOR, "tr[data-session='tree-1']").send_keys(Keys.ENTER)  # rows take the keyboard
    wait_ready(browser, "session")
    paths = [e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, "tr.node")]
    assert paths == ["/", "/plan", "/plan/search", "/plan/write", "/review", "/review/deep", "/review/deep/er"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.leaf")) == 6
    tree_rows = [r for r in dashboard.rows if r.get("session_id") == "tree-1"]
    assert fmt_usd(sum(r["cost_nanousd"] for r in tree_rows) / 1e9) in text(browser, ".detail-head")
    plan = browser.find_element(By.CSS_SELECTOR, "tr.node[data-path='/plan']").find_elements(By.TAG_NAME, "td")
    assert plan[1].text == "4"  # /plan and its three descendants
    bars = browser.find_elements(By.CSS_SELECTOR, ".span-bar")
    assert len(bars) == 6 and all(b.size["width"] > 0 for b in bars)
    assert "agent run" in text(browser, ".detail-head h1")
    finish_view(browser, dashboard, "session-tree")

    open_view(browser, dashboard, f"/session/{LIVE_SESSION}?since=24h", "session")
    paths = [e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, "tr.node")]
    assert paths == ["/", "/answer", "/answer/check"]
    finish_view(browser, dashboard, "session-live")


def test_vendored_chart_library_is_the_locked_npm_build() -> None:
    """The committed uPlot build is byte for byte what ``npm ci`` installs from the lockfile
    (scripts/bootstrap test runs it), so nobody ships a hand-edited or stale copy."""
    root = Path(__file__).resolve().parents[2]
    lock = orjson.loads((root / "dashboard-src" / "package-lock.json").read_bytes())
    locked = lock["packages"]["node_modules/uplot"]["version"]
    installed = root / "dashboard-src" / "node_modules" / "uplot"
    assert installed.is_dir(), "run scripts/bootstrap test (npm ci in dashboard-src)"
    assert orjson.loads((installed / "package.json").read_bytes())["version"] == locked
    vendor = root / "src" / "fastgw" / "analytics" / "dashboard" / "vendor"
    for source, copy in [("dist/uPlot.iife.min.js", "uPlot.iife.min.js"), ("dist/uPlot.min.css", "uPlot.min.css"),
                         ("LICENSE", "uPlot.LICENSE")]:
        assert (vendor / copy).read_bytes() == (installed / source).read_bytes(), copy
    assert f"(v{locked})" in (vendor / "uPlot.iife.min.js").read_text()[:200]


def test_the_page_asks_for_the_admin_key(start_gateway, mock: MockUpstreamThread, browser: webdriver.Chrome,  # type: ignore[no-untyped-def]
                                         tmp_path: Path) -> None:
    """With ``admin.key`` set the page loads, the API answers 401, and the page asks for the key
    (once per tab: it is kept in sessionStorage); a wrong key is asked for again."""
    admin_port, key = free_port(), "dash-key-" + uuid.uuid4().hex
    gw = start_gateway(gateway_config(mock.url, logging={"sink": f"chdb://{tmp_path / 'chdb'}", "batch_max_age": "200ms"},
                                      admin={"port": admin_port, "key": key}))
    wait_for_port(admin_port, proc=gw.proc)
    with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    url = f"http://127.0.0.1:{admin_port}"

    def logged() -> int:
        request = urllib.request.Request(url + "/api/v1/summary?since=1h", headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return int(orjson.loads(resp.read())["requests"])
        except urllib.error.HTTPError as exc:
            exc.close()
            return 0  # 503 until the first batch creates the tables
    deadline = time.monotonic() + 20
    while logged() < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert logged() == 1

    browser.get(url + "/#/overview?since=1h")
    wait_ready(browser, "error")
    form = browser.find_element(By.CSS_SELECTOR, "#notice form.keyform")
    form.find_element(By.TAG_NAME, "input").send_keys("not-the-key")
    form.find_element(By.TAG_NAME, "button").click()
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.body.dataset.ready") == "error")
    form = browser.find_element(By.CSS_SELECTOR, "#notice form.keyform")  # asked again
    form.find_element(By.TAG_NAME, "input").send_keys(key)
    form.find_element(By.TAG_NAME, "button").click()
    wait_ready(browser, "overview")
    assert text(browser, "[data-kpi=requests] .kpi-value") == "1"
    assert not browser.find_element(By.ID, "notice").is_displayed()
    browser.refresh()  # the key stays for the tab
    wait_ready(browser, "overview")
    refused = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert refused and all("status of 401" in e["message"] for e in refused), refused  # the two refusals only
    browser.get("about:blank")
