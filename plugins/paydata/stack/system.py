"""OS-level helpers: the unprivileged service user, process liveness, ports, waiting."""

from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paydata.stack.config import StackError

FALLBACK_SERVICE_USER = "paydata"


@dataclass(frozen=True)
class ServiceUser:
    """The OS user that owns and runs the Postgres cluster."""

    name: str
    uid: int
    gid: int

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> dict:
        """Extra ``subprocess`` arguments that run a child as this user (empty when it is us)."""
        if self.is_current:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "env_home": pwd.getpwuid(self.uid).pw_dir}

    def run(self, args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        kwargs = self.popen_kwargs()
        home = kwargs.pop("env_home", None)
        child_env = dict(env if env is not None else os.environ)
        if home:
            child_env["HOME"] = home
            child_env["USER"] = child_env["LOGNAME"] = self.name
        return subprocess.run(args, env=child_env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False, **kwargs)


def service_user() -> ServiceUser:
    """The user to run Postgres as: ourselves unless root; as root ``postgres`` if it exists, else a
    system user ``paydata`` created with useradd (StackError if that fails)."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    for name in ("postgres", FALLBACK_SERVICE_USER):
        try:
            entry = pwd.getpwnam(name)
            return ServiceUser(name, entry.pw_uid, entry.pw_gid)
        except KeyError:
            continue
    result = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
         FALLBACK_SERVICE_USER],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise StackError(
            f"Postgres refuses to run as root and no unprivileged user exists; creating system user "
            f"{FALLBACK_SERVICE_USER!r} failed: {result.stderr.strip() or result.returncode}. "
            "Create an unprivileged user named 'postgres' or 'paydata' and rerun."
        )
    entry = pwd.getpwnam(FALLBACK_SERVICE_USER)
    return ServiceUser(FALLBACK_SERVICE_USER, entry.pw_uid, entry.pw_gid)


def _can_traverse(path: Path, user: ServiceUser) -> bool:
    info = path.stat()
    if user.uid == 0:
        return True
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    groups = {user.gid} | {g.gr_gid for g in grp.getgrall() if user.name in g.gr_mem}
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def check_traversable(target: Path, user: ServiceUser) -> None:
    """Raise StackError when ``user`` cannot reach ``target`` through every existing parent folder."""
    for parent in reversed(Path(target).resolve().parents):
        if parent.exists() and not _can_traverse(parent, user):
            raise StackError(
                f"The Postgres server runs as OS user {user.name!r}, which cannot enter {parent} "
                f"(mode {stat.filemode(parent.stat().st_mode)}), so it cannot reach {target}. Either allow "
                f"traversal (`chmod o+x {parent}`) or put the stack elsewhere with PAYDATA_STACK_DIR=<folder "
                "whose parents are all world-traversable, e.g. under /tmp or /srv>."
            )


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def process_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on ``host:port`` (binding would fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def port_owner(port: int) -> str:
    """Best-effort description of the process listening on ``port`` ("" when unknown)."""
    try:
        import psutil
    except ImportError:
        return ""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                cmd = " ".join(process_cmdline(conn.pid))[:120]
                return f"pid {conn.pid} ({cmd})" if cmd else f"pid {conn.pid}"
    except (psutil.Error, OSError):
        return ""
    return ""


def port_taken_error(service: str, port: int, env_var: str) -> StackError:
    owner = port_owner(port)
    who = f" by {owner}" if owner else " by another process"
    return StackError(
        f"Cannot start {service}: 127.0.0.1:{port} is already taken{who}, which is not this stack's "
        f"{service}. Stop that process, or run this stack on another port (set {env_var}=<free port> "
        "and rerun `python -m paydata.stack up`; the env file is rewritten with the new port)."
    )


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
