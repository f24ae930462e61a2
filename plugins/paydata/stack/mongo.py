"""SecantusDB (MongoDB wire protocol) run detached with a pid file and a log file.

The server requires SCRAM-SHA-256 authentication (``--auth``) and TLS with a certificate from the
stack's CA, and it holds one user per consumer (``paydata.mongo_access``). SecantusDB has no
localhost exception: its first user can only be created while it runs without ``--auth``. The
stack does that (:func:`bootstrap_root`) on a throwaway loopback port, with TLS, for the one
command that creates or resets ``paydata_root``; the stack's own port never serves without auth.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from paydata import settings
from paydata.stack.config import StackConfig, StackError
from paydata.stack.system import pid_alive, port_in_use, port_taken_error, process_cmdline, wait_until

log = logging.getLogger(__name__)

START_TIMEOUT = 30
STOP_TIMEOUT = 20
# MongoDB's code for a failed login (wrong user or password).
AUTHENTICATION_FAILED = 18


def command(config: StackConfig, auth: bool = True, port: int | None = None) -> list[str]:
    """The server's command line: TLS from the stack's CA always, ``--auth`` unless bootstrapping."""
    # An explicit (empty) --config stops SecantusDB from picking up a secantusd.toml from cwd or $HOME.
    args = [str(config.python), "-m", "secantus", "--config", str(config.mongo_dir / "secantusd.toml"),
            "--host", "127.0.0.1", "--port", str(port or config.mongo_port),
            "--storage-path", str(config.mongo_data),
            "--tls-cert-file", str(config.mongo_server_cert), "--tls-key-file", str(config.mongo_server_key),
            "--tls-ca-file", str(config.ca_cert)]
    return [*args, "--auth"] if auth else args


def uri(config: StackConfig, port: int | None = None) -> str:
    """URI without credentials (enough for ``ping`` and the SCRAM handshake), verifying the server."""
    return settings.Connection(
        "stack", "mongo", "127.0.0.1", port or config.mongo_port,
        extra={"tls": True, "tlsCAFile": str(config.ca_cert)},
    ).mongo_uri()


def user_uri(config: StackConfig, user: str, password: str, port: int | None = None) -> str:
    return settings.Connection(
        "stack", "mongo", "127.0.0.1", port or config.mongo_port, login=user, password=password,
        extra={"tls": True, "tlsCAFile": str(config.ca_cert), "authSource": settings.MONGO_AUTH_SOURCE},
    ).mongo_uri()


def _is_ours(pid: int, config: StackConfig) -> bool:
    cmdline = process_cmdline(pid)
    return "secantus" in cmdline and str(config.mongo_data) in cmdline


def _runs_current_options(pid: int, config: StackConfig) -> bool:
    """False for a server started by an older stack (no ``--auth``, no TLS) or with other files."""
    return process_cmdline(pid)[1:] == command(config)[1:]


def read_pid(config: StackConfig) -> int | None:
    try:
        return int(config.mongo_pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def running_pid(config: StackConfig) -> int | None:
    """Pid of this stack's SecantusDB, or None (a pid file naming a dead or foreign process is stale)."""
    pid = read_pid(config)
    if pid and pid_alive(pid) and _is_ours(pid, config):
        return pid
    return None


def ping(config: StackConfig, timeout_ms: int = 2000, port: int | None = None) -> bool:
    """True when the server answers ``ping`` over TLS (no login needed for ``ping``)."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    try:  # a missing CA file (stack never brought up with TLS) fails already here
        # socketTimeoutMS too: a wedged server accepts the connection and answers the handshake but
        # never answers a command, and a ping without it would wait forever.
        client = MongoClient(uri(config, port), serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                             socketTimeoutMS=timeout_ms)
    except (PyMongoError, OSError):
        return False
    try:
        return client.admin.command("ping").get("ok") == 1
    except PyMongoError:
        return False
    finally:
        client.close()


def _log_tail(config: StackConfig, lines: int = 15) -> str:
    try:
        return "\n".join(config.mongo_log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _check_installed(python: Path) -> None:
    if not os.access(python, os.X_OK):
        raise StackError(f"Python interpreter {python} for SecantusDB does not exist; recreate the virtualenv.")
    probe = subprocess.run([str(python), "-c", "import secantus"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise StackError(
            f"SecantusDB is not installed for {python} ({probe.stderr.strip().splitlines()[-1:] or '?'}). "
            "Run `pip install -r requirements.txt` (package secantusdb) and rerun `python -m paydata.stack up`."
        )


def start(config: StackConfig) -> int:
    """Start SecantusDB detached unless already running and answering; return its pid.

    A stale pid file (crash, reboot) is replaced. Raises StackError when the port belongs to a foreign
    process, when SecantusDB is not installed, or when it exits or stays silent during start-up.
    """
    pid = running_pid(config)
    if pid and not _runs_current_options(pid, config):
        log.warning("SecantusDB (pid %s) runs without the stack's current auth/TLS options; restarting it", pid)
        stop(config)
        pid = None
    if pid and wait_until(lambda: ping(config, 1000), START_TIMEOUT, 0.2):
        return pid
    if pid:
        # Running but silent (wedged, e.g. every command waiting on a storage lock): its data is on
        # disk, so stop it and start a fresh process on the same data.
        log.warning("SecantusDB (pid %s) runs but has not answered ping for %ss; restarting it. Last lines of %s:\n%s",
                    pid, START_TIMEOUT, config.mongo_log, _log_tail(config))
        stop(config)
    config.mongo_pid_file.unlink(missing_ok=True)
    if port_in_use(config.mongo_port):
        raise port_taken_error("SecantusDB", config.mongo_port, "PAYDATA_MONGO_PORT")
    _check_installed(config.python)
    process = _spawn(config, command(config))
    config.mongo_pid_file.write_text(f"{process.pid}\n")
    try:
        _wait_ready(config, process, config.mongo_port)
    except StackError:
        if process.poll() is not None:
            config.mongo_pid_file.unlink(missing_ok=True)
        raise
    return process.pid


def _spawn(config: StackConfig, args: list[str]) -> subprocess.Popen:
    config.mongo_data.mkdir(parents=True, exist_ok=True)
    (config.mongo_dir / "secantusd.toml").touch()
    with open(config.mongo_log, "ab") as log_file:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                cwd=config.mongo_dir, start_new_session=True)


def _wait_ready(config: StackConfig, process: subprocess.Popen, port: int) -> None:
    def ready() -> bool:
        return process.poll() is not None or ping(config, 500, port)

    wait_until(ready, START_TIMEOUT, 0.2)
    if process.poll() is not None:
        raise StackError(f"SecantusDB exited with code {process.returncode} during start-up. "
                         f"Last lines of {config.mongo_log}:\n{_log_tail(config)}")
    if not ping(config, 1000, port):
        raise StackError(f"SecantusDB (pid {process.pid}) did not answer within {START_TIMEOUT}s; "
                         f"see {config.mongo_log}")


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bootstrap_root(config: StackConfig, password: str) -> None:
    """Create ``paydata_root`` (role ``root``), or reset its password, on the stopped server's data.

    SecantusDB creates a first user only without ``--auth``, so this runs it without auth for the
    length of one command, on a random loopback port (with TLS), never on the stack's port. Raises
    StackError if the stack's server is still running or the temporary one does not start.
    """
    from pymongo import MongoClient

    from paydata.mongo_access import ROOT_USER

    if running_pid(config) is not None:
        raise StackError("SecantusDB must be stopped before its administrator can be created")
    _check_installed(config.python)
    port = _free_loopback_port()
    process = _spawn(config, command(config, auth=False, port=port))
    try:
        _wait_ready(config, process, port)
        with MongoClient(uri(config, port), serverSelectionTimeoutMS=5000) as client:
            admin = client[settings.MONGO_AUTH_SOURCE]
            if admin.command("usersInfo", ROOT_USER).get("users"):
                admin.command("updateUser", ROOT_USER, pwd=password, roles=[{"role": "root", "db": "admin"}])
            else:
                admin.command("createUser", ROOT_USER, pwd=password, roles=[{"role": "root", "db": "admin"}],
                              mechanisms=["SCRAM-SHA-256"])
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    log.info("SecantusDB administrator %s provisioned", ROOT_USER)


def can_log_in(config: StackConfig, user: str, password: str) -> bool:
    """True when ``user``/``password`` authenticate on the running server; False on code 18.

    Other failures (server down, TLS) raise pymongo errors."""
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    try:
        with MongoClient(user_uri(config, user, password), serverSelectionTimeoutMS=5000) as client:
            client.admin.command("connectionStatus")
        return True
    except OperationFailure as exc:
        if exc.code == AUTHENTICATION_FAILED:
            return False
        raise


def root_client(config: StackConfig, password: str, **kwargs):
    """A pymongo client logged in as ``paydata_root`` (provisioning and throwaway test databases)."""
    from pymongo import MongoClient

    from paydata.mongo_access import ROOT_USER

    return MongoClient(user_uri(config, ROOT_USER, password), **kwargs)


def ensure_access(config: StackConfig, passwords: Mapping[str, str]) -> list[str]:
    """Users, roles and collection definitions on the running server; returns what changed.

    ``passwords`` maps every user of ``paydata.mongo_access`` and ``paydata_root`` to its password.
    When the administrator cannot log in (a new stack, one started before access control, or a lost
    password file) the server is stopped, :func:`bootstrap_root` runs and it is started again.
    """
    from paydata import mongo_access, nosql

    root_password = passwords[mongo_access.ROOT_USER]
    changes: list[str] = []
    if not can_log_in(config, mongo_access.ROOT_USER, root_password):
        stop(config)
        bootstrap_root(config, root_password)
        start(config)
        changes.append(f"provisioned {mongo_access.ROOT_USER}")
    with root_client(config, root_password, serverSelectionTimeoutMS=5000) as client:
        changes += mongo_access.ensure_access(
            client[settings.MONGO_AUTH_SOURCE], passwords,
            lambda user, password: can_log_in(config, user, password),
        )
        changes += nosql.apply_definitions(client[settings.MONGO_DATABASE])
    return changes


def stop(config: StackConfig) -> bool:
    """SIGTERM (SecantusDB closes WiredTiger cleanly), SIGKILL after a grace period; True if it was running."""
    pid = running_pid(config)
    if pid is None:
        config.mongo_pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not pid_alive(pid), STOP_TIMEOUT):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), 5)
    config.mongo_pid_file.unlink(missing_ok=True)
    return True
