"""A real Dagster deployment for end-to-end tests: ``dagster-webserver`` and ``dagster-daemon`` as processes.

The fixture writes a temporary ``DAGSTER_HOME`` (queued run coordinator, ten concurrent runs) and a temporary
``XINST_HOME`` (every language of the packaged registry, the embedded sample as raw data), starts both
processes on 127.0.0.1 with a free port, and waits until the code location is loaded. Teardown
stops each process group it started (the code servers and run workers they spawn are in those groups):
SIGTERM, then SIGKILL after a grace period. A failed test that used the server gets both logs' tails in its
report, whatever failed it (an assertion, or pytest-timeout).

No wait here or in ``backfills.py`` has a fixed time limit: a loaded CI machine may take minutes where an idle one
takes seconds. Each wait ends on the state it waits for, fails at once when a process it needs has exited, and
otherwise fails only after :data:`STALL_LIMIT_S` in which nothing moved (no log line, no event, no status
change); pytest-timeout's limit bounds the test as a whole.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, TypeVar

import httpx
import psutil
import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from xinst_assets.instance_storage import LOCAL_INSTANCE_YAML
from xinst_assets_tests.processes import run as run_process

# The three languages of the whole-graph backfill; sw and id are the two that lid.176 handles worst (see
# ENVIRONMENT.md), so the filters meet their hard cases. The deployment itself has every language.
E2E_LANGUAGES = ("sw", "id", "vi")
# How long a wait lets nothing move before it calls the deployment stuck: no new line in the processes' logs,
# no event in a run, no status change. Generous: between two events a loaded machine may spend minutes (loading
# the definitions in a new run process, the daemon's 30 s between looks at a backfill).
STALL_LIMIT_S = 600.0
STOP_GRACE_S = 15
# One GraphQL request's limit: a hang guard for a request that will never be answered, far beyond a slow answer.
GRAPHQL_TIMEOUT_S = 300

# xinst's local instance (its storage and run launcher included; its run monitoring polling every 5 s), plus a
# run queue that runs up to ten at a time (one backfill of every language partition at once).
DAGSTER_YAML = LOCAL_INSTANCE_YAML.replace("poll_interval_seconds: 30", "poll_interval_seconds: 5") + """\
run_queue:
  dequeue_interval_seconds: 1
concurrency:
  runs:
    max_concurrent_runs: 10
  pools:
    # The `gpu` pool of the model stages: a deployment sets it to its GPUs (deploy/dagster.yaml). Here the
    # models are tiny and run on the CPU, so the three partitions' model steps may run together.
    default_limit: 3
nux:
  enabled: false
"""

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(probe: Callable[[], T | None], what: str, progress: Callable[[], Hashable] | None = None,
             stall_s: float = STALL_LIMIT_S, interval_s: float = 1.0) -> T:
    """Call ``probe`` until it returns something other than None/False; no time limit of its own, but fail
    after ``stall_s`` seconds in which ``progress()`` (a token that changes whenever something moves, such as
    the size of a log) kept the same value. Without ``progress``, ``stall_s`` bounds the whole wait. Errors
    that a probe can meet while a server starts (HTTP, GraphQL) are retried; others go through."""
    last_change, token = time.monotonic(), None
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except (httpx.HTTPError, OSError, DagsterGraphQLClientError) as exc:
            last_error = exc
        if progress is not None:
            now_token = progress()
            if now_token != token:
                token, last_change = now_token, time.monotonic()
        if time.monotonic() - last_change > stall_s:
            raise TimeoutError(f"waited for {what}: nothing moved for {stall_s:.0f}s (last error: {last_error!r})")
        time.sleep(interval_s)


def venv_tool(name: str) -> str:
    """A console script of this Python environment (``dagster``, ``dagster-webserver``...)."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed beside {sys.executable}")
    return str(path)


def e2e_environment(dagster_home: Path, xinst_home: Path, languages_file: Path | None, **extra: str) -> dict:
    """The environment of a deployment's processes: its homes, the language file, quiet and offline tools."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "XINST_HOME": str(xinst_home),
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    # Settings of the calling shell must not leak into a test deployment.
    for name in ("XINST_LANGUAGES_FILE", "XINST_RAW_SOURCES", "XINST_WAREHOUSE"):
        env.pop(name, None)
    if languages_file is not None:
        env["XINST_LANGUAGES_FILE"] = str(languages_file)
    env.update(extra)
    return env


def start_process(args: list[str], env: dict, log_path: Path, cwd: Path) -> subprocess.Popen:
    """Start ``args`` in its own process group (so teardown reaches the runs it spawns), logging to a file."""
    log = log_path.open("wb")
    try:
        return subprocess.Popen(
            args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()  # the child keeps its own descriptor


def stop_process_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group led by ``proc``; SIGKILL it if it is still there after ``grace_s``."""
    if proc.poll() is None:
        with _ignore_missing():
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # Children (code servers, run workers) may outlive the leader: finish the whole group.
    with _ignore_missing():
        os.killpg(proc.pid, signal.SIGKILL)
    with _ignore_missing():
        proc.wait(timeout=grace_s)


class _ignore_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is not None and issubclass(exc_type, (ProcessLookupError, subprocess.TimeoutExpired))


def log_tail(path: Path, chars: int = 4000) -> str:
    """The end of a process log, for assertion messages."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return f"(no log at {path})"


@dataclass
class DagsterServer:
    """A running webserver + daemon pair and the folders they use."""

    url: str
    root: Path
    dagster_home: Path
    xinst_home: Path
    env: dict
    webserver: subprocess.Popen
    daemon: subprocess.Popen

    @property
    def warehouse_path(self) -> Path:
        return self.xinst_home / "warehouse.duckdb"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @cached_property
    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=GRAPHQL_TIMEOUT_S)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict:
        """Run a GraphQL query or mutation through dagster-graphql's client; return its ``data`` (GraphQL
        errors raise). The client's public methods cover job runs only, so backfills, sensors and event logs
        go through the query method they use themselves."""
        return self.client._execute(query, variables or {})

    def assert_running(self) -> None:
        """Fail at once, with both logs' tails, when the webserver or the daemon has exited."""
        for proc, name in ((self.webserver, "webserver"), (self.daemon, "daemon")):
            if proc.poll() is not None:
                raise RuntimeError(f"dagster {name} exited with {proc.returncode}\n{self.logs()}")

    def log_sizes(self) -> tuple[int, ...]:
        """The sizes of the processes' logs: they grow while the deployment works (a progress token)."""
        return tuple(_size(self.root / name) for name in ("webserver.log", "daemon.log"))

    def logs(self) -> str:
        """The tails of both process logs, for assertion messages."""
        return (
            f"--- webserver ---\n{log_tail(self.root / 'webserver.log')}\n"
            f"--- daemon ---\n{log_tail(self.root / 'daemon.log')}"
        )


LOCATION_STATUS_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _location_loaded(server: DagsterServer) -> bool:
    server.assert_running()
    if httpx.get(f"{server.url}/server_info", timeout=GRAPHQL_TIMEOUT_S).status_code != 200:
        return False
    entries = server.graphql(LOCATION_STATUS_QUERY)["workspaceOrError"].get("locationEntries") or []
    for entry in entries:
        error = entry["locationOrLoadError"] or {}
        if error.get("__typename") == "PythonError":
            raise RuntimeError(
                f"code location {entry['name']} failed to load: {error['message']}\n{server.logs()}"
            )
    return bool(entries) and all(
        e["loadStatus"] == "LOADED"
        and (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
        for e in entries
    )


def _listens(proc: subprocess.Popen, port: int) -> bool:
    """Whether ``proc`` (or a process it started) listens on ``port`` of 127.0.0.1."""
    try:
        parent = psutil.Process(proc.pid)
        for process in (parent, *parent.children(recursive=True)):
            for conn in process.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    return True
    except psutil.Error:  # it exited meanwhile: the caller sees that
        pass
    return False


def _start_webserver(env: dict, root: Path, attempts: int = 3) -> tuple[subprocess.Popen, int]:
    """Start the webserver on a free port and wait until it listens there. Another process may take the port
    between the probe and the bind (the webserver then exits saying so): it is started again on another port.
    Listening is checked on the webserver's own sockets, so a server of someone else's on that port is never
    taken for it."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        log = root / "webserver.log"
        proc = start_process(
            [venv_tool("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-m", "xinst_assets.definitions"],
            env, log, cwd=root,
        )
        outcome = wait_for(lambda: "listening" if _listens(proc, port) else "exited" if proc.poll() is not None
                           else None, f"dagster-webserver to listen on port {port}",
                           progress=lambda: (_size(log), _size(root / "daemon.log")))
        if outcome == "listening":
            return proc, port
        stop_process_group(proc)
        if "address already in use" not in log_tail(log).lower() or attempt == attempts:
            raise RuntimeError(f"dagster-webserver exited with {proc.returncode}:\n{log_tail(log)}")
        log.rename(root / f"webserver-port-taken-{attempt}.log")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def dagster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterServer]:
    """``dagster-webserver`` and ``dagster-daemon run`` over ``-m xinst_assets.definitions``: every language,
    the embedded sample as raw data."""
    root = tmp_path_factory.mktemp("e2e-deployment")
    dagster_home, xinst_home = root / "dagster_home", root / "xinst_home"
    dagster_home.mkdir()
    xinst_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    env = e2e_environment(dagster_home, xinst_home, None)

    # Create the instance's storage once, before two processes open it at the same time.
    migrated = run_process([venv_tool("dagster"), "instance", "migrate"], env=env, cwd=root)
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    daemon = start_process([venv_tool("dagster-daemon"), "run", "-m", "xinst_assets.definitions"], env,
                           root / "daemon.log", cwd=root)
    webserver: subprocess.Popen | None = None
    try:
        webserver, port = _start_webserver(env, root)
        server = DagsterServer(f"http://127.0.0.1:{port}", root, dagster_home, xinst_home, env, webserver, daemon)
        try:
            wait_for(lambda: _location_loaded(server), "the webserver and code location", progress=server.log_sizes)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{server.logs()}") from None
        yield server
    finally:
        stop_process_group(daemon)
        if webserver is not None:
            stop_process_group(webserver)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Expose each phase's report on the test item (``item.rep_call``) so fixtures can act on failures, and
    attach the server's log tails to the report of a failed test that used the server (also when
    pytest-timeout stopped it)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    server = getattr(item, "funcargs", {}).get("dagster_server")
    if report.failed and isinstance(server, DagsterServer):
        report.sections.append(("dagster webserver and daemon logs (tails)", server.logs()))
    return report
