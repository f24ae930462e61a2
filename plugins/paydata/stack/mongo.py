"""SecantusDB (MongoDB wire protocol) run detached with a pid file and a log file."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from paydata.stack.config import StackConfig, StackError
from paydata.stack.system import pid_alive, port_in_use, port_taken_error, process_cmdline, wait_until

START_TIMEOUT = 30
STOP_TIMEOUT = 20


def command(config: StackConfig) -> list[str]:
    # An explicit (empty) --config stops SecantusDB from picking up a secantusd.toml from cwd or $HOME.
    return [str(config.python), "-m", "secantus", "--config", str(config.mongo_dir / "secantusd.toml"),
            "--host", "127.0.0.1", "--port", str(config.mongo_port),
            "--storage-path", str(config.mongo_data)]


def uri(config: StackConfig) -> str:
    return f"mongodb://127.0.0.1:{config.mongo_port}/?directConnection=true"


def _is_ours(pid: int, config: StackConfig) -> bool:
    cmdline = process_cmdline(pid)
    return "secantus" in cmdline and str(config.mongo_data) in cmdline


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


def ping(config: StackConfig, timeout_ms: int = 2000) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client = MongoClient(uri(config), serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
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
    if pid and wait_until(lambda: ping(config, 1000), START_TIMEOUT, 0.2):
        return pid
    if pid:
        raise StackError(f"SecantusDB (pid {pid}) runs but does not answer ping; run `down` then `up`. "
                         f"Last lines of {config.mongo_log}:\n{_log_tail(config)}")
    config.mongo_pid_file.unlink(missing_ok=True)
    if port_in_use(config.mongo_port):
        raise port_taken_error("SecantusDB", config.mongo_port, "PAYDATA_MONGO_PORT")
    _check_installed(config.python)
    config.mongo_data.mkdir(parents=True, exist_ok=True)
    (config.mongo_dir / "secantusd.toml").touch()
    with open(config.mongo_log, "ab") as log:
        process = subprocess.Popen(command(config), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=config.mongo_dir, start_new_session=True)
    config.mongo_pid_file.write_text(f"{process.pid}\n")

    def ready() -> bool:
        return process.poll() is not None or ping(config, 500)

    wait_until(ready, START_TIMEOUT, 0.2)
    if process.poll() is not None:
        config.mongo_pid_file.unlink(missing_ok=True)
        raise StackError(f"SecantusDB exited with code {process.returncode} during start-up. "
                         f"Last lines of {config.mongo_log}:\n{_log_tail(config)}")
    if not ping(config, 1000):
        raise StackError(f"SecantusDB (pid {process.pid}) did not answer within {START_TIMEOUT}s; "
                         f"see {config.mongo_log}")
    return process.pid


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
