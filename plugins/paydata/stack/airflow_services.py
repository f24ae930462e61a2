"""Scheduled mode: the four Airflow 3 components of the local stack, started and stopped together.

``python -m paydata.stack airflow up [--port N]`` (``make airflow``) starts, against the stack's
Airflow home, an API server on ``127.0.0.1:<port>`` (UI, REST API and the execution API tasks
report to), the scheduler (LocalExecutor), the DAG processor and the triggerer. All four get the same
environment: the stack's env file with the API port, base URL and execution API URL of *this* port,
so tasks never call a default ``localhost:8080`` that is someone else's. The UI asks for a login
(``secretstore.AIRFLOW_USERS``, passwords in ``<stack>/secrets/airflow_passwords.json``).

Each component runs in its own process group with its pid and port in
``<airflow home>/run/<component>.json`` and its output in ``<airflow home>/logs/<component>.log``;
``down`` stops exactly those processes (SIGTERM to the group, SIGKILL after a grace period) and
nothing else. ``up`` is idempotent: running components are kept, unless they run on another port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from paydata import settings
from paydata.stack import envfile
from paydata.stack.config import StackConfig, StackError
from paydata.stack.system import pid_alive, port_in_use, port_taken_error, process_cmdline, wait_until

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# /api/v2/monitor/health names the components differently from their CLI commands.
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
START_TIMEOUT = 240.0
STOP_GRACE = 30.0


@dataclass(frozen=True)
class Component:
    name: str
    pid: int
    port: int

    @property
    def alive(self) -> bool:
        if not pid_alive(self.pid):
            return False
        # A recycled pid belongs to some other program: never treat it (or signal it) as ours.
        # (The API server renames itself "airflow api_server -- ...".)
        cmdline = " ".join(process_cmdline(self.pid))
        return "airflow" in cmdline and (self.name in cmdline or self.name.replace("-", "_") in cmdline)


def _state_file(config: StackConfig, name: str):
    return config.airflow_run_dir / f"{name}.json"


def _log_file(config: StackConfig, name: str):
    return config.airflow_home / "logs" / f"{name}.log"


def recorded(config: StackConfig) -> dict[str, Component]:
    """Components recorded as started (alive or not)."""
    found = {}
    for name in COMPONENTS:
        path = _state_file(config, name)
        try:
            data = json.loads(path.read_text())
            found[name] = Component(name, int(data["pid"]), int(data["port"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def running(config: StackConfig) -> dict[str, Component]:
    return {name: comp for name, comp in recorded(config).items() if comp.alive}


def url(port: int) -> str:
    return f"http://{envfile.API_HOST}:{port}"


def component_env(config: StackConfig, port: int) -> dict[str, str]:
    """The environment of every component: ours, the stack's env file, and this port's API settings."""
    env = {**os.environ, **settings.parse_env_file(config.env_file), **envfile.airflow_api_env(port)}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def command(config: StackConfig, name: str, port: int) -> list[str]:
    args = [str(config.python), "-m", "airflow", name]
    if name == "api-server":
        args += ["--host", envfile.API_HOST, "--port", str(port), "--workers", "1"]
    if name in ("scheduler", "triggerer"):
        # All components share one machine and one log folder, from which the API server reads task
        # logs directly: no log-serving process (it would take the fixed ports 8793/8794 of the host).
        args.append("--skip-serve-logs")
    return args


def health(port: int, timeout: float = 5.0) -> dict | None:
    """``/api/v2/monitor/health`` of the API server on ``port`` (no login needed), or None."""
    try:
        with urllib.request.urlopen(f"{url(port)}/api/v2/monitor/health", timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _healthy(port: int) -> bool:
    report = health(port)
    if not report:
        return False
    return all((report.get(key) or {}).get("status") == "healthy" for key in HEALTH_KEYS.values())


def start(config: StackConfig, port: int | None = None, *, timeout: float = START_TIMEOUT,
          progress=print) -> dict:
    """Start the components that are not running (the stack's services must be up); wait until the
    API server reports the scheduler, DAG processor and triggerer healthy. Returns :func:`describe`.

    Raises StackError when the port is taken by another program, components already run on another
    port, or they do not become healthy within ``timeout`` (the message names the log files).
    """
    port = port or config.airflow_port
    alive = running(config)
    other_port = sorted({comp.port for comp in alive.values()} - {port})
    if other_port:
        raise StackError(f"Airflow of this stack already runs on port {other_port[0]}; "
                         f"stop it first (`python -m paydata.stack airflow down`)")
    if "api-server" not in alive and port_in_use(port, envfile.API_HOST):
        raise port_taken_error("the Airflow API server", port, "PAYDATA_AIRFLOW_PORT (or --port)")
    config.airflow_run_dir.mkdir(parents=True, exist_ok=True)
    (config.airflow_home / "logs").mkdir(parents=True, exist_ok=True)
    env = component_env(config, port)
    for name in COMPONENTS:
        if name in alive:
            continue
        progress(f"starting airflow {name} (log {_log_file(config, name)})")
        with open(_log_file(config, name), "ab") as log:
            process = subprocess.Popen(command(config, name, port), env=env, cwd=config.airflow_home,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        _state_file(config, name).write_text(json.dumps({"pid": process.pid, "port": port}))
    progress(f"waiting for the API server on {url(port)} and the components to report healthy ...")
    started = time.monotonic()

    def ready() -> bool:
        dead = [name for name, comp in recorded(config).items() if not comp.alive]
        if dead:
            raise StackError(f"airflow {', '.join(dead)} exited during start-up; see "
                             + ", ".join(str(_log_file(config, name)) for name in dead))
        return _healthy(port)

    if not wait_until(ready, timeout, interval=2.0):
        raise StackError(f"Airflow did not become healthy within {timeout:.0f}s on {url(port)}; logs in "
                         f"{config.airflow_home / 'logs'}")
    progress(f"healthy after {time.monotonic() - started:.0f}s")
    return describe(config)


def stop(config: StackConfig, grace: float = STOP_GRACE) -> list[str]:
    """Stop the recorded components (their whole process groups); returns the names stopped."""
    stopped = []
    components = recorded(config)
    for comp in components.values():
        if comp.alive:
            try:
                os.killpg(comp.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(comp.name)
    for comp in components.values():
        if comp.name in stopped and not wait_until(lambda comp=comp: not pid_alive(comp.pid), grace, 0.2):
            try:
                os.killpg(comp.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_until(lambda comp=comp: not pid_alive(comp.pid), 10, 0.2)
        _state_file(config, comp.name).unlink(missing_ok=True)
    return [name for name in COMPONENTS if name in stopped]


def describe(config: StackConfig) -> dict:
    """Where the UI is, which components run, where the credentials and logs are."""
    alive = running(config)
    port = next(iter({comp.port for comp in alive.values()}), config.airflow_port)
    return {
        "url": url(port),
        "running": [name for name in COMPONENTS if name in alive],
        "stopped": [name for name in COMPONENTS if name not in alive],
        "users": ", ".join(f"{user} ({role})" for user, role in _users().items()),
        "passwords_file": str(config.airflow_users_file),
        "logs": str(config.airflow_home / "logs"),
    }


def _users() -> dict[str, str]:
    from paydata.stack.secretstore import AIRFLOW_USERS

    return AIRFLOW_USERS


def format_description(info: dict) -> str:
    lines = [
        f"Airflow UI and REST API: {info['url']}  (bound to {envfile.API_HOST} only)",
        f"  users: {info['users']}; passwords in {info['passwords_file']}",
        f"  running: {', '.join(info['running']) or 'nothing'}"
        + (f"; stopped: {', '.join(info['stopped'])}" if info["stopped"] and info["running"] else ""),
        f"  component logs: {info['logs']}/<component>.log; task logs in the UI",
        "  DAGs start paused: unpause them in the UI or with `airflow dags unpause <dag_id>`",
    ]
    return "\n".join(lines)
