"""The exporter's fleet page at `/`, in a real browser: it shows the injected P1 nodes (and
only those) as active critical threats, the grades of every node, and a hostile node name
as text; opening it runs no analysis and no query."""

from __future__ import annotations

import html
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.browser import HOSTILE, browser, load  # noqa: F401
from tests.test_exporter import Running, scrape
from tests.test_webconfig import _basic, _hash

# injected findings at or past the emergency check's P1 levels (README: CPU 95 %, 5 % free
# memory, 85 degrees, a node silent for half an hour, network errors)
P1_KINDS = {"cpu_saturation", "memory_exhausted", "overheating", "stale", "network_errors"}


@pytest.fixture(scope="module")
def fleet_page(pg_server):
    """A 14-node fleet ending now plus a hostile-named node at 97 % CPU, served by an
    exporter scraped until every analysis has a result."""
    name = pg_server.create_database("fleet_page")
    dsn = pg_server.dsn_for(name)
    now = int(time.time())
    with Store(dsn) as store:
        fleet = load_fleet(store, FleetSpec(nodes=14, containers=2, days=3, end=now))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO monitor_samples_ring (sample_time, node_name, container_name,"
            " node_flag, cpu_total_pct, mem_available_mb, mem_total_mb, load_1m)"
            " SELECT g, %s, NULL, true, 97, 8000, 16000, 1 FROM generate_series(%s, %s, 60) g",
            (HOSTILE, now - 3600, now),
        )
    running = Running(dsn)
    try:
        samples = scrape(running.url, timeout_header=120)
        yield running, samples, fleet, dsn
    finally:
        running.close()
        pg_server.drop_database(name)


@pytest.mark.slow
def test_fleet_page_shows_the_p1_nodes_and_hostile_names_as_text(fleet_page, browser):  # noqa: F811
    running, samples, fleet, _ = fleet_page
    injected = {f["node"] for f in fleet.truth["findings"] if f["kind"] in P1_KINDS}
    served_p1 = {
        dict(labels)["node"]
        for (metric, labels), v in samples.items()
        if metric == "perf_analyzer_emergency_threat" and v == 3
    }
    assert served_p1 == injected | {HOSTILE}

    loaded = load(browser, running.url + "/", width=400)  # a phone's width
    page = loaded.page
    assert loaded.errors == [] and loaded.dialogs == []
    rows = page.locator("table.threats tbody tr")
    shown_p1 = {
        r.locator("td").nth(0).inner_text()
        for r in rows.all()
        if r.locator("td").nth(1).inner_text() == "P1-CRITICAL"
    }
    assert shown_p1 == injected | {HOSTILE}
    graded = page.locator("table.grades tbody tr td:first-child").all_inner_texts()
    assert HOSTILE in graded and len(graded) == 15
    assert page.locator("script").count() == 0
    assert page.locator('meta[http-equiv="refresh"]').count() == 1
    assert page.locator('a[href="/metrics"]').count() == 1


def test_a_page_view_starts_no_analysis(fleet_page, monkeypatch):
    """The page reads the cached results: a view never asks the scheduler for a run (a
    scrape of /metrics does), and the hostile name never reaches the page unescaped."""
    running, _, _, _ = fleet_page

    def refresh(deadline: float) -> None:
        raise AssertionError("a page view started an analysis")

    monkeypatch.setattr(running.scheduler, "refresh", refresh)
    for _ in range(3):
        with urllib.request.urlopen(running.url + "/") as r:
            body = r.read()
        assert r.status == 200 and HOSTILE.encode() not in body
        assert html.escape(HOSTILE).encode() in body


def test_the_page_before_any_result_says_none():
    """Just after start no analysis has a result: every section is there, empty."""
    from exporter.html.fleet import fleet_page as page_of

    body = page_of(
        dict.fromkeys(("emergency", "availability", "capacity", "anomalies")),
        version="0",
        table='t"<x>',
        telemetry_path="/metrics",
    )
    assert body.count('<p class="dim">none</p>') == 4
    assert "NO RESULT YET" in body and "t&quot;&lt;x&gt;" in body and "<x>" not in body


def test_the_page_needs_the_same_credentials_as_metrics(fleet_page, tmp_path):
    """Behind basic auth, `/` answers 401 without the credentials `/metrics` needs."""
    _, _, _, dsn = fleet_page
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{_hash('s3cret')}'\n")
    guarded = Running(dsn, web_config=str(web))
    try:
        for path in ("/", "/metrics"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(guarded.url + path, timeout=30)
            assert err.value.code == 401
        request = urllib.request.Request(
            guarded.url + "/", headers={"Authorization": _basic("prometheus", "s3cret")}
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200 and b"Grades and SLIs" in r.read()
    finally:
        guarded.close()
