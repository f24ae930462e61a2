"""Scheduled mode for real: the four Airflow components on a port that is not 8080, a login, a CDC
run triggered over the REST API without a logical date, and the warehouse build its Asset event
triggers. Then a run that reads nothing publishes nothing and triggers nothing. Then a headless
Chromium logs in and opens the pages a user looks at (skipped, with the reason, without Chromium).

Uses the developer's stack (its databases and Airflow home), starts the components itself and
stops them afterwards; restores the paused state of the DAGs it unpaused.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 600  # seconds a DAG run may take on a loaded 2-core machine
DAGS = ("oltp_cdc", "warehouse_build")
STAGING_OLTP = "paydata://warehouse/staging/oltp"


class Api:
    """The Airflow REST API as a logged-in user (a JWT from the simple auth manager's /auth/token)."""

    def __init__(self, base: str, username: str, password: str):
        self.base = base
        self.token = self.request("POST", "/auth/token", {"username": username, "password": password},
                                  auth=False)["access_token"]

    def request(self, method: str, path: str, body=None, *, auth: bool = True, query: dict | None = None):
        url = self.base + path + (f"?{urllib.parse.urlencode(query, doseq=True)}" if query else "")
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from None
        return json.loads(raw) if raw else None

    def runs(self, dag_id: str) -> list[dict]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", query={"limit": 100})["dag_runs"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}

    def wait_finished(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(3)
        raise AssertionError(f"{dag_id} run {run_id} still {run['state']} after {timeout}s: "
                             f"{self.task_states(dag_id, run_id)}")


def _free_port() -> int:
    from paydata.stack.system import port_in_use

    for port in random.sample(range(18100, 18999), 200):
        if not port_in_use(port):
            return port
    raise RuntimeError("no free port in 18100..18999")


def _load_traffic(payments: int = 40) -> dict:
    """A small batch of new payments in the stack's OLTP database (a day nobody loaded before)."""
    from paydata import settings
    from paydata.generator import TrafficConfig
    from paydata.generator.loader import load_traffic
    from paydata.generator.reference import load_merchant_profiles, seed_reference
    from paydata.oltp.reference_sync import sync_reference

    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=random.randrange(3000))
    ref = settings.pg_connect(settings.REFERENCE_CONN_ID)
    oltp = settings.pg_connect(settings.OLTP_CONN_ID)
    try:
        seed_reference(ref, merchants=5, seed=0, fx_start=start.date(), fx_days=2)
        sync_reference(ref, oltp)
        config = TrafficConfig(payments=payments, start=start, days=1, seed=random.randrange(1 << 30))
        return load_traffic(oltp, config, load_merchant_profiles(ref), progress=False).as_dict()
    finally:
        ref.close()
        oltp.close()


@pytest.fixture(scope="module")
def scheduled(stack):
    from paydata.stack import airflow_services
    from paydata.stack.__main__ import apply_schema_migrations
    from paydata.stack.secretstore import ensure_airflow_users

    if airflow_services.running(stack):
        pytest.skip("the scheduled mode of this stack already runs; stop it (make airflow-down) to run this test")
    apply_schema_migrations()
    port = _free_port()
    assert port != 8080
    info = airflow_services.start(stack, port, progress=lambda line: None)
    try:
        api = Api(info["url"], "admin", ensure_airflow_users(stack)["admin"])
        paused = {dag_id: api.request("GET", f"/api/v2/dags/{dag_id}")["is_paused"] for dag_id in DAGS}
        try:
            yield api, info
        finally:
            for dag_id, was_paused in paused.items():
                api.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": was_paused})
    finally:
        airflow_services.stop(stack)


def test_the_api_asks_for_a_login_and_listens_on_loopback_only(scheduled):
    api, info = scheduled
    assert info["url"].startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(info["url"] + "/api/v2/dags", timeout=30)
    assert denied.value.code == 401
    with pytest.raises(AssertionError, match="HTTP 401"):
        Api(info["url"], "admin", "not-the-password")
    assert api.request("GET", "/api/v2/dags", query={"limit": 100})["total_entries"] >= 8


def test_cdc_over_rest_feeds_the_asset_triggered_build_and_an_empty_run_publishes_nothing(scheduled):
    from paydata.cdc.engine import engine_for_source

    api, _ = scheduled
    loaded = _load_traffic()
    assert loaded
    engine_for_source("reference").run()  # the build reads both sources' staging tables
    builds_before = {run["dag_run_id"] for run in api.runs("warehouse_build")}
    cdc_before = {run["dag_run_id"] for run in api.runs("oltp_cdc")}
    for dag_id in DAGS:
        api.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    # Triggered without a logical date, as the UI's and CLI's plain "trigger" do.
    run = api.request("POST", "/api/v2/dags/oltp_cdc/dagRuns", {"logical_date": None, "conf": {}})
    finished = api.wait_finished("oltp_cdc", run["dag_run_id"])
    assert finished["state"] == "success", api.task_states("oltp_cdc", run["dag_run_id"])
    # Unpausing may also have started the cron run: whichever captured the batch published it.
    for other in api.runs("oltp_cdc"):
        if other["dag_run_id"] not in cdc_before:
            api.wait_finished("oltp_cdc", other["dag_run_id"])
    events = api.request("GET", "/api/v2/assets/events",
                         query={"source_dag_id": "oltp_cdc", "limit": 100, "order_by": "-timestamp"})["asset_events"]
    new_events = [e for e in events if e["source_run_id"] not in cdc_before and e["uri"] == STAGING_OLTP]
    assert new_events, "no staging Asset event from the runs that captured the new payments"
    for event in new_events:
        assert event["extra"]["changes"] > 0 and event["extra"]["start_lsn"] and event["extra"]["end_lsn"]
        assert "charge" in event["extra"]["tables"]

    deadline = time.monotonic() + RUN_TIMEOUT
    build = None
    while time.monotonic() < deadline and build is None:
        new = [r for r in api.runs("warehouse_build")
               if r["dag_run_id"] not in builds_before and r["run_type"] == "asset_triggered"]
        build = new[0] if new else None
        if build is None:
            time.sleep(3)
    assert build, "the staging Asset event did not trigger warehouse_build"
    done = api.wait_finished("warehouse_build", build["dag_run_id"])
    assert done["state"] == "success", api.task_states("warehouse_build", build["dag_run_id"])
    upstream = api.request(
        "GET", f"/api/v2/dags/warehouse_build/dagRuns/{urllib.parse.quote(build['dag_run_id'])}/upstreamAssetEvents")
    assert any(e["extra"].get("changes", 0) > 0 for e in upstream["asset_events"])

    # Nothing new committed: the next capture run skips both publications, and nothing is triggered.
    builds_now = {r["dag_run_id"] for r in api.runs("warehouse_build")}
    empty = api.request("POST", "/api/v2/dags/oltp_cdc/dagRuns", {"logical_date": None, "conf": {}})
    assert api.wait_finished("oltp_cdc", empty["dag_run_id"])["state"] == "success"
    states = api.task_states("oltp_cdc", empty["dag_run_id"])
    assert states["publish_staging"] == "skipped" and states["publish_mongo"] == "skipped", states
    assert states["capture"] == "success" and states["lag_check"] == "success", states
    time.sleep(10)  # the scheduler would have created an asset-triggered run by now
    triggered = [r for r in api.runs("warehouse_build")
                 if r["dag_run_id"] not in builds_now and r["run_type"] == "asset_triggered"]
    assert triggered == []


# -- the UI in a real browser ------------------------------------------------------------------------------

def _chromium():
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (requirements-dev.txt)")
    return browser, driver


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(120)
    yield chrome
    chrome.quit()


ERROR_TEXTS = ("Something went wrong", "Internal Server Error", "Unexpected error", "Error fetching",
               "Not Found", "does not exist", "was not found", "403 Forbidden", "Unauthorized")


def _page_text(chrome, must_contain: str, timeout: float = 90) -> str:
    """Wait until the page shows ``must_contain``; fail on an error banner meanwhile."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = chrome.execute_script("return document.body ? document.body.innerText : ''") or ""
        banners = [t for t in ERROR_TEXTS if t in text]
        assert not banners, f"error banner {banners} on {chrome.current_url}: {text[:800]}"
        if must_contain in text:
            return text
        time.sleep(1)
    raise AssertionError(f"{must_contain!r} not shown on {chrome.current_url} within {timeout}s: {text[:800]}")


def test_ui_login_dag_list_graph_asset_and_task_log_in_chromium(scheduled, browser):
    from selenium.webdriver.common.by import By

    from paydata.stack import StackConfig
    from paydata.stack.secretstore import ensure_airflow_users

    api, info = scheduled
    base = info["url"]
    browser.get(base + "/")
    _page_text(browser, "Sign into Airflow")  # no way in without a login
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(ensure_airflow_users(StackConfig.default())["admin"])
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    deadline = time.monotonic() + 90
    while "/auth/login" in browser.current_url and time.monotonic() < deadline:
        time.sleep(1)
    assert "/auth/login" not in browser.current_url, "the login did not succeed"

    browser.get(base + "/dags")
    text = _page_text(browser, "warehouse_build")
    for dag_id in ("oltp_cdc", "reference_cdc", "workload_generate", "platform_healthcheck"):
        assert dag_id in text

    browser.get(base + "/dags/oltp_cdc")
    _page_text(browser, "publish_staging")
    browser.find_element(By.CSS_SELECTOR, "button[aria-label^='Show Graph']").click()
    deadline = time.monotonic() + 60
    nodes = []
    while time.monotonic() < deadline and len(nodes) < 5:
        nodes = [n.text for n in browser.find_elements(By.CSS_SELECTOR, ".react-flow__node") if n.text]
        time.sleep(1)
    graph = " ".join(nodes)
    for task_id in ("slot_health", "capture", "publish_staging", "publish_mongo", "lag_check"):
        assert task_id in graph, f"graph lacks {task_id}: {nodes}"
    _page_text(browser, "lag_check")

    assets = api.request("GET", "/api/v2/assets", query={"uri_pattern": "staging/oltp"})["assets"]
    assert assets, "the staging Asset of oltp is unknown to Airflow"
    browser.get(f"{base}/assets/{assets[0]['id']}")
    _page_text(browser, STAGING_OLTP)

    runs = [r for r in api.runs("oltp_cdc") if r["state"] == "success"]
    if not runs:
        pytest.skip("no finished oltp_cdc run to open a task log of (the scheduled-mode test did not run)")
    run_id = urllib.parse.quote(runs[-1]["dag_run_id"])
    browser.get(f"{base}/dags/oltp_cdc/runs/{run_id}/tasks/capture?try_number=1")
    _page_text(browser, "cdc run oltp")  # the engine's one-line run summary, in the task log
