"""Who is running a stored run: its owner (host, process id, a random token) and heartbeat.

A run marked ``running`` is either being measured right now or was left so by a process that
died (``kill -9``, a power cut). The owner record tells the two apart, so that ``--resume``
refuses a run whose process is alive (it would measure items twice) and takes over one whose
process is gone. An owner is *gone* when

- it ran on this host and its process id no longer exists (or is a zombie), or
- its heartbeat is older than :data:`STALE_AFTER_S`, whatever the host (a process on another
  machine cannot be asked; a hung or frozen driver counts as gone too).

The driver writes a heartbeat every :data:`HEARTBEAT_S` from a background thread while items run
(:class:`Heartbeat`), so a long item does not make its run look dead. Every write of a run checks
the token, so a process whose run was taken over stops instead of writing beside the new owner.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0
# How long stopping waits for a beat in progress (a beat waits at most 5 s for a lock).
BUSY_JOIN_S = 6.0


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def this_host() -> str:
    return socket.gethostname()


def new_token() -> str:
    return uuid.uuid4().hex


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (killed, not yet reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS): the signal test is all there is
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@dataclass(frozen=True)
class Owner:
    """The process recorded as running a run; ``heartbeat_at`` is an ISO 8601 UTC time or None."""

    host: str | None
    pid: int | None
    heartbeat_at: str | None

    def describe(self) -> str:
        where = "this host" if self.host == this_host() else f"host {self.host!r}"
        return f"process {self.pid} on {where}"

    def heartbeat_age_s(self, now: datetime | None = None) -> float | None:
        if not self.heartbeat_at:
            return None
        try:
            beat = datetime.fromisoformat(self.heartbeat_at)
        except ValueError:
            return None
        return ((now or datetime.now(timezone.utc)) - beat).total_seconds()

    def gone_because(self) -> str | None:
        """Why this owner counts as gone, or None while it is alive."""
        if self.pid is None or self.host is None:
            return "no owner was recorded (a run from an older rnnbench)"
        age_s = self.heartbeat_age_s()
        if age_s is None:
            return "it never wrote a heartbeat"
        if self.host == this_host() and not pid_alive(self.pid):
            return f"{self.describe()} no longer exists"
        if age_s > STALE_AFTER_S:
            return f"{self.describe()} wrote no heartbeat for {age_s:.0f} s (more than {STALE_AFTER_S:.0f} s)"
        return None


class Heartbeat:
    """A daemon thread that records, every ``interval_s``, that this process still runs ``run_id``.

    It has its own connection (SQLite connections stay in their thread) and never raises: a beat
    that meets a locked database is simply tried again at the next interval. ``lost`` becomes True
    when the run's token is no longer this process's (another process took the run over).
    """

    def __init__(self, path: Path, run_id: int, token: str, interval_s: float | None = None):
        self.path, self.run_id, self.token = path, run_id, token
        self.interval_s = HEARTBEAT_S if interval_s is None else interval_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"rnnbench-heartbeat-{run_id}", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=BUSY_JOIN_S)

    def _beat(self) -> None:
        try:
            conn = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None)
        except sqlite3.Error:
            return
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    cur = conn.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ? AND owner_token = ?",
                                       (now_iso(), self.run_id, self.token))
                except sqlite3.Error:
                    continue
                if cur.rowcount == 0:
                    self.lost = True
                    return
        finally:
            conn.close()
