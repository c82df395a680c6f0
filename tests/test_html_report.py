"""`report --format html` in a real browser: the shared 30-day fleet's daily report renders
without errors, has one chart per capacity warning and per anomaly, each of the right node,
and its exhaustion dates are the JSON report's; a hostile node name is text, never markup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import psycopg
import pytest

from exporter.analyses.common import DAY
from exporter.analyses.sli import system_availability_check
from exporter.analyzer import PerformanceAnalyzer
from exporter.html.reports import week_grades
from exporter.simulate import FleetSpec, load_fleet
from exporter.store import Store
from tests.browser import HOSTILE, browser, load  # noqa: F401
from tests.conftest import FLEET_END


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *args],
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "NO_COLOR": "1"},
    )


def svg_text(figure) -> str:
    return " ".join(figure.locator("svg text").all_text_contents())


@pytest.fixture(scope="module")
def daily(fleet_db, tmp_path_factory):
    """The shared fleet's daily report as JSON and as HTML, both as of FLEET_END."""
    out = tmp_path_factory.mktemp("html") / "daily.html"
    common = ("report", "daily", "--dsn", fleet_db.dsn, "--at", str(FLEET_END))
    as_json = cli(*common, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    as_html = cli(*common, "--format", "html", "--out", str(out))
    assert as_html.returncode == 0, as_html.stderr
    return json.loads(as_json.stdout), out


@pytest.mark.slow
def test_daily_report_renders_one_chart_per_finding(daily, browser):  # noqa: F811
    report, path = daily
    assert report["capacity_warnings"] and report["anomalies"]  # the fleet has both
    loaded = load(browser, path.as_uri())
    page = loaded.page
    assert loaded.errors == [] and loaded.dialogs == []

    forecasts = page.locator('figure[data-kind="forecast"]')
    assert Counter(
        (f.get_attribute("data-node"), f.get_attribute("data-resource")) for f in forecasts.all()
    ) == Counter((f["node_name"], f["resource_type"]) for f in report["capacity_warnings"])
    anomalies = page.locator('figure[data-kind="anomaly"]')
    assert Counter(
        (a.get_attribute("data-node"), a.get_attribute("data-metric")) for a in anomalies.all()
    ) == Counter((a["node_name"], a["metric"]) for a in report["anomalies"])
    for figure in forecasts.all() + anomalies.all():  # the chart is drawn, titled by its node
        assert figure.locator("svg").count() == 1
        assert figure.get_attribute("data-node") in svg_text(figure)

    for f in report["capacity_warnings"]:
        if f["status"] != "exhaustion":
            continue
        day = time.strftime("%Y-%m-%d", time.gmtime(f["exhaustion_time"]))
        figure = page.locator(
            f'figure[data-node="{f["node_name"]}"][data-resource="{f["resource_type"]}"]'
        )
        assert f"exhaustion on {day}" in figure.locator("figcaption").inner_text()
        assert f"exhaustion {day}" in svg_text(figure)  # marked on the chart
    assert path.stat().st_size < 5_000_000


@pytest.mark.slow
def test_daily_report_fits_a_phone_and_prints(daily, browser):  # noqa: F811
    """At a phone's width nothing but a table's own scroll box is wider than the screen,
    and the page prints."""
    _, path = daily
    loaded = load(browser, path.as_uri(), width=390)
    page = loaded.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.emulate_media(media="print")
    assert page.pdf().startswith(b"%PDF-")


@pytest.fixture(scope="module")
def hostile_dsn(pg_server):
    """Two quiet nodes and one with a hostile name at 97 % CPU for the last hour (a P1)."""
    name = pg_server.create_database("html_hostile")
    dsn = pg_server.dsn_for(name)
    now = int(time.time())
    with Store(dsn) as store:
        load_fleet(store, FleetSpec(nodes=2, containers=0, days=1, end=now))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO monitor_samples_ring (sample_time, node_name, container_name,"
            " node_flag, cpu_total_pct, mem_available_mb, mem_total_mb, load_1m)"
            " SELECT g, %s, NULL, true, 97, 8000, 16000, 1 FROM generate_series(%s, %s, 60) g",
            (HOSTILE, now - 3600, now),
        )
    yield dsn, now
    pg_server.drop_database(name)


@pytest.mark.slow
def test_hostile_node_name_is_text_in_the_report(hostile_dsn, browser, tmp_path):  # noqa: F811
    dsn, now = hostile_dsn
    out = tmp_path / "availability.html"
    done = cli(
        "report",
        "availability",
        "--dsn",
        dsn,
        "--at",
        str(now),
        "--format",
        "html",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    loaded = load(browser, out.as_uri())
    assert loaded.dialogs == [] and loaded.errors == []
    assert HOSTILE in loaded.page.locator("table td").all_inner_texts()
    assert HOSTILE in loaded.page.locator('figure[data-kind="grades"] svg text').all_text_contents()
    assert loaded.page.locator("script").count() == 0


@pytest.mark.slow
def test_html_needs_a_file_and_a_report_with_a_page(fleet_db):
    """Bad requests end in one sentence, before any analysis runs."""
    common = ("--dsn", fleet_db.dsn, "--format", "html")
    no_file = cli("report", "daily", *common)
    assert no_file.returncode != 0 and "--out FILE" in no_file.stderr
    no_page = cli("report", "cpus", *common, "--out", "x.html")
    assert no_page.returncode != 0 and "Traceback" not in no_page.stderr
    assert "--format html is for the reports" in no_page.stderr
    no_dir = cli("report", "daily", *common, "--out", "/nonexistent/dir/x.html")
    assert no_dir.returncode != 0 and "Traceback" not in no_dir.stderr
    assert "--out /nonexistent/dir/x.html: its directory does not exist" in no_dir.stderr


def test_missing_matplotlib_is_one_sentence(fleet_db, tmp_path):
    blocked = "import sys; sys.modules['matplotlib'] = None; from exporter.cli import main; main()"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            blocked,
            "report",
            "daily",
            "--dsn",
            fleet_db.dsn,
            "--format",
            "html",
            "--out",
            str(tmp_path / "x.html"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: --format html needs matplotlib, which is not installed: "
        "pip install 'perf-analyzer-exporter[html]'"
    ]
    assert not (tmp_path / "x.html").exists()


@pytest.mark.slow
def test_heatmap_grades_are_the_per_day_sli_runs(fleet_db):
    """The heat-map's days, graded three at once on one context, are the SLI runs of each day
    one after the other (the last day with its live threats, the others without)."""
    with PerformanceAnalyzer(fleet_db.dsn) as analyzer:
        ctx = analyzer.ctx
        slid = week_grades(ctx, FLEET_END)
        scratch = [
            {
                n["node_name"]: n["grade"]
                for n in system_availability_check(
                    ctx, hours=24, now=FLEET_END - k * DAY, threats=None if k == 0 else []
                )["nodes"]
            }
            for k in range(6, -1, -1)
        ]
    assert slid == scratch
    assert len({g for day in scratch for g in day.values()}) > 1  # the week has some contrast
