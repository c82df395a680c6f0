"""Installable under its own name and fitting the usual stack: the wheel's command writes the
rules and dashboards from an empty directory, the rules as a PrometheusRule, the process
and interpreter metrics on /metrics, and hardened systemd units."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zlib
from pathlib import Path

import pytest
import yaml
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families

from exporter.analyzer import PerformanceAnalyzer
from exporter.collector import PerfAnalyzerCollector, Scheduler
from exporter.config import Config
from exporter.store import Store
from tests.conftest import require_program

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rules_from_an_empty_directory_write_everything_into_output(tmp_path):
    result = cli("rules", "--output", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no docs/ beside it
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "alertmanager.yml",
        "perf-analyzer.rules.yml",
        "perf-analyzer.tests.yml",
        "runbooks.md",
    ]
    # the same catalogue as the committed files
    assert (out / "runbooks.md").read_text() == (ROOT / "docs" / "runbooks.md").read_text()
    committed = ROOT / "alert_rules" / "perf-analyzer.rules.yml"
    assert (out / "perf-analyzer.rules.yml").read_text() == committed.read_text()


def test_prometheusrule_holds_the_same_groups_and_promtool_accepts_them(tmp_path):
    promtool = require_program("promtool")
    result = cli("rules", "--format", "prometheusrule", "--output", "k8s", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load((tmp_path / "k8s" / "perf-analyzer.prometheusrule.yml").read_text())
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"]["name"] == "perf-analyzer"
    committed = yaml.safe_load((ROOT / "alert_rules" / "perf-analyzer.rules.yml").read_text())
    assert manifest["spec"] == committed
    extracted = tmp_path / "groups.yml"
    extracted.write_text(yaml.safe_dump(manifest["spec"]))
    check = subprocess.run(
        [promtool, "check", "rules", str(extracted)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.fixture
def collector():
    """A collector over a database that is not there: the analyses fail fast, the exporter's
    own and runtime metrics are still served."""
    config = Config()
    store = Store("postgresql://127.0.0.1:1/none?connect_timeout=1", "monitor_samples_ring")
    scheduler = Scheduler(PerformanceAnalyzer(store, config=config), config)
    yield PerfAnalyzerCollector(scheduler)
    scheduler.close(wait_for_runs=False)
    store.close()


@pytest.mark.parametrize(
    "accept", ["text/plain;version=0.0.4", "application/openmetrics-text;version=1.0.0"]
)
def test_process_and_python_metrics_are_on_the_scrape(collector, accept):
    encoder, content_type = choose_encoder(accept)
    first = collector.exposition(encoder, content_type, time.monotonic() + 0.5)
    second = collector.exposition(encoder, content_type, time.monotonic() + 0.5)
    text = first.raw.decode()
    names = {f.name for f in text_string_to_metric_families(text.replace("# EOF\n", ""))}
    assert {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info",
        "python_gc_objects_collected",
        "perf_analyzer_database_up",
    } <= {n.removesuffix("_total") for n in names}
    # the runtime metrics come first, the cached body after them
    assert text.index("process_cpu_seconds_total") < text.index("perf_analyzer_database_up")
    if "openmetrics" in content_type:
        assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    for scrape in (first, second):
        assert gzip.decompress(scrape.gzipped()) == scrape.raw
        # a single gzip member, as clients that stop after the first one need
        raw = scrape.gzipped()
        decompressor = zlib.decompressobj(16 + 15)
        assert decompressor.decompress(raw) == scrape.raw and decompressor.unused_data == b""


def _exposure(unit: Path) -> float:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = next(ln for ln in result.stdout.splitlines() if "Overall exposure level" in ln)
    return float(line.split(":")[1].split()[0])


@pytest.mark.parametrize(
    ("unit", "limit"),
    [
        ("perf-analyzer.service", 2.0),
        ("perf-analyzer-prune.service", 2.0),
        # reads the whole host's /proc and cgroups, so ProcSubset and PrivateUsers are out
        ("perf-analyzer-sample.service", 2.0),
    ],
)
def test_units_are_hardened(unit, limit):
    assert _exposure(DEPLOY / unit) <= limit


def test_units_run_the_commands_they_name():
    units = {p.name: p.read_text() for p in DEPLOY.glob("perf-analyzer*")}
    assert "perf-analyzer serve" in units["perf-analyzer.service"]
    assert "perf-analyzer sample" in units["perf-analyzer-sample.service"]
    assert "perf-analyzer db prune" in units["perf-analyzer-prune.service"]
    assert "Type=oneshot" in units["perf-analyzer-prune.service"]
    assert "OnCalendar=" in units["perf-analyzer-prune.timer"]
    assert "pip install perf-analyzer-exporter" in units["perf-analyzer.service"]
    analyze = shutil.which("systemd-analyze")
    if analyze:
        result = subprocess.run(
            [analyze, "verify", "--man=no", *(str(DEPLOY / u) for u in units)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        problems = [
            ln
            for ln in result.stderr.splitlines()
            if ln.strip() and "is not executable" not in ln  # /opt/perf-analyzer is not here
        ]
        assert problems == []


@pytest.mark.slow
def test_the_wheel_installs_under_its_own_name_and_works_outside_the_repository(tmp_path):
    """Build from a copy of what the wheel needs (as the Dockerfile does), install into a
    fresh venv that borrows the current one's dependencies, run the command elsewhere."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "exporter", src / "exporter", ignore=shutil.ignore_patterns("*.pyc"))
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = dist.glob("*.whl")
    assert wheel.name.startswith("perf_analyzer_exporter-")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    # dependencies: the current venv's, seen through a .pth (the test venv is not the system)
    site = next((venv / "lib").glob("python3*/site-packages"))
    here = sysconfig.get_paths()["purelib"]
    (site / "zz-deps.pth").write_text(here + "\n")
    show = subprocess.run(
        [str(python), "-m", "pip", "show", "perf-analyzer-exporter"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "Name: perf-analyzer-exporter" in show.stdout

    work = tmp_path / "elsewhere"
    work.mkdir()
    command = str(venv / "bin" / "perf-analyzer")
    for args in (["rules", "--output", "rules"], ["dashboards", "--output", "dash"]):
        result = subprocess.run(
            [command, *args], cwd=work, capture_output=True, text=True, env=env, timeout=120
        )
        assert result.returncode == 0, result.stderr
    # the package came from the wheel, not from the repository
    where = subprocess.run(
        [str(python), "-c", "import exporter; print(exporter.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
    )
    assert str(venv) in where.stdout, where.stdout
    assert sorted(p.name for p in work.iterdir()) == ["dash", "rules"]
    assert (work / "rules" / "runbooks.md").read_text() == (ROOT / "docs/runbooks.md").read_text()
    for name in ("perf-analyzer.rules.yml", "perf-analyzer.tests.yml", "alertmanager.yml"):
        assert (work / "rules" / name).read_text() == (ROOT / "alert_rules" / name).read_text()
    committed = sorted(p.name for p in (ROOT / "dashboards").iterdir())
    assert sorted(p.name for p in (work / "dash").iterdir()) == committed
    for name in committed:
        assert (work / "dash" / name).read_text() == (ROOT / "dashboards" / name).read_text()


class _Counters:
    def __init__(self) -> None:
        self.counts = {"accepted": 0}
        self.accept_errors = 0


def test_scrapes_between_two_runs_share_one_body_and_its_compression(collector):
    """The HTTP counters change on every scrape; they are rendered into the scrape's prefix,
    so the cached body (and its deflate stream) stays the same object between two runs."""
    collector.http_limits = _Counters()
    encoder, content_type = choose_encoder("text/plain;version=0.0.4")
    scrapes = []
    for accepted in (1, 2):
        collector.http_limits.counts["accepted"] = accepted
        scrapes.append(collector.exposition(encoder, content_type, time.monotonic() + 0.5))
    first, second = scrapes
    assert b"perf_analyzer_http_connections_accepted_total 1.0" in first.raw
    assert b"perf_analyzer_http_connections_accepted_total 2.0" in second.raw
    assert first.body is second.body
    assert first.body.deflated() is second.body.deflated()
    assert gzip.decompress(second.gzipped()) == second.raw
