"""The event spool: rows the database did not take (an activity event, an audit row) wait in a
local file until it does, so none is lost while the database is locked, full, read-only or gone.

Each process appends to a file of its own,
``<ACTIVITY_SPOOL_FOLDER>/<install id>/<host>-<pid>-<random>.jsonl``, one JSON line per row:
``{"key": "<file id>:<sequence>", "kind": "event" | "audit", "row": {...}}``.
A line is written whole at once, so it outlives the process; a small thread fsyncs the file
within FSYNC_SECONDS (at once past FSYNC_EVERY lines), and again before a replay and at exit.
The process holds an exclusive flock on its file while it lives: another process that can take
the lock knows the owner is dead and the file is its to replay.

A file is created under a hidden name (a leading ".") that replays ignore, locked, and only then
renamed into place, so no replay can take a new file for a dead one in between.

A replay inserts the rows in file order, each with its key in the table's ``spool_key`` column
(unique where set) and ``ON CONFLICT DO NOTHING``, so a row replayed twice (a crash between the
commit and the file's truncation) lands once. Every replay takes, besides the process's own rows,
the files of the folder whose lock is free (their process is gone), whichever host wrote them:
a container comes back under a new host name, so the lock, not the name, tells a dead file.
The process's next successful write wakes the thread to replay (also the first one after
start-up when files of other processes wait), and the thread retries on its own while rows wait;
:func:`replay_pending` (the leader's refresh job, ``flask activity replay-spool``) does the same
at once. When the spool file cannot be written either (the same
full disk), rows wait in memory up to ACTIVITY_SPOOL_MEMORY_LIMIT; past it each is dropped,
counted and logged whole. The counters are this process's, like the response times in /health.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask

from activity_monitor.extension import get_state, now
from activity_monitor.storage import Connection, DatabaseError, IntegrityError
from activity_monitor.storage.base import DataError

log = logging.getLogger(__name__)

STATE_KEY = "event_spool"
KINDS = ("event", "audit")
SUFFIX = ".jsonl"
# A file being created: ignored by replays until it is locked and renamed into place.
HIDDEN_PREFIX = "."
# Unsynced lines that make the thread fsync at once rather than within FSYNC_SECONDS.
FSYNC_EVERY = 64
FSYNC_SECONDS = 0.2
# Events replayed per transaction: big enough to be fast, small enough that a failure midway
# leaves little to do again.
REPLAY_BATCH = 500
# Errors that say a row itself can never be written (and a row missing a column, or of the wrong
# shape): it is logged whole and skipped rather than holding back every row after it. Any other
# error (locked, full, read-only, a table missing) leaves the rows for the next replay.
ROW_REJECTED = IntegrityError + DataError + (KeyError, TypeError)
# Bytes of this process's file read per round of a replay; rows spooled meanwhile wait for the
# next round, and a replay ends after REPLAY_ROUNDS rounds however busy the spool is.
READ_BYTES = 4 * 1024 * 1024
REPLAY_ROUNDS = 1000
# While rows wait, the spool's thread retries them on its own after ACTIVITY_SPOOL_RETRY_SECONDS,
# doubling the wait after each failed try up to this.
RETRY_MAX_SECONDS = 60.0


@dataclass
class SpoolEntry:
    """One spooled row, and where its line ends in this process's file (None: held in memory)."""

    key: str
    kind: str
    row: dict[str, Any]
    end: int | None = None


@dataclass
class Failure:
    """The last write the database refused, while writes keep failing."""

    error: str
    at: str
    lock_timeout: bool


def parse_lines(data: bytes, base: int = 0) -> tuple[list[SpoolEntry], int]:
    """Return the entries of spool lines read from offset ``base``, and how many lines were torn
    (cut short by a crash, or not a spool entry) and skipped."""
    entries: list[SpoolEntry] = []
    torn = 0
    position = 0
    while position < len(data):
        newline = data.find(b"\n", position)
        if newline < 0:
            torn += 1  # the last line, cut short: its write never finished
            break
        line = data[position:newline]
        position = newline + 1
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            entry = SpoolEntry(str(item["key"]), item["kind"], dict(item["row"]), base + position)
        except (ValueError, KeyError, TypeError):
            torn += 1
            continue
        if entry.kind not in KINDS:
            torn += 1
            continue
        entries.append(entry)
    return entries, torn


def runs_of_kind(entries: list[SpoolEntry]) -> Iterator[list[SpoolEntry]]:
    """Split entries, in order, into runs of one kind (events at most REPLAY_BATCH a run; audit rows
    one a run, since each is announced once written)."""
    run: list[SpoolEntry] = []
    for entry in entries:
        if run and (entry.kind != run[0].kind or entry.kind == "audit" or len(run) >= REPLAY_BATCH):
            yield run
            run = []
        run.append(entry)
    if run:
        yield run


def is_spool_file(name: str) -> bool:
    """Tell whether a name in the spool folder is a process's spool file (not one being created)."""
    return name.endswith(SUFFIX) and not name.startswith(HIDDEN_PREFIX)


class EventSpool:
    """The spool of one app in this process (see the module's docstring)."""

    def __init__(self, app: Flask, folder: str, memory_limit: int, retry_seconds: float = 5.0):
        self.app = app
        self.folder = folder
        self.memory_limit = memory_limit
        self.retry_seconds = retry_seconds
        self.host = socket.gethostname().replace(os.sep, "_")
        self.exit_hook_registered = False
        self.start_process()

    def start_process(self) -> None:
        """Start afresh in this process: a new file id, nothing pending, zero counters (after a
        fork, what the parent held is the parent's)."""
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.replay_lock = threading.Lock()
        self.wakeup = threading.Event()
        self.file_id = f"{self.host}-{self.pid}-{secrets.token_hex(4)}"
        self.path: str | None = None
        self.fd: int | None = None
        self.sequence = 0
        self.size = 0
        self.replayed_to = 0
        self.pending_in_file = 0
        self.unsynced = 0
        self.memory: deque[SpoolEntry] = deque()
        self.memory_replaying = False
        self.worker: threading.Thread | None = None
        self.replay_wanted = False
        self.failure: Failure | None = None
        # Files of other processes with rows in them: the first successful write replays them.
        self.dead_files_waiting = self.files_waiting(others_only=True) > 0
        self.last_error: str | None = None
        self.last_failure_at: str | None = None
        self.last_spool_error: str | None = None
        self.counts = dict.fromkeys(("spooled", "replayed", "duplicates", "dropped", "torn", "rejected"), 0)

    def check_process(self) -> None:
        """Notice a fork: the child lets go of the parent's file (the parent keeps its lock) and
        starts afresh."""
        if self.pid == os.getpid():
            return
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.start_process()

    # --- spooling ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Rows of this process not yet in the database."""
        return self.pending_in_file + len(self.memory)

    def append(self, kind: str, row: dict[str, Any], error: BaseException) -> None:
        """Keep a row the database refused (``error``) until a replay writes it."""
        self.check_process()
        storage = get_state(self.app).storage
        failure = Failure(
            error=str(error) or type(error).__name__,
            at=now(self.app).isoformat(timespec="milliseconds"),
            lock_timeout=storage.is_lock_timeout(error),
        )
        with self.lock:
            first = self.failure is None
            self.failure = failure
            self.last_error, self.last_failure_at = failure.error, failure.at
            self.sequence += 1
            entry = SpoolEntry(f"{self.file_id}:{self.sequence}", kind, row)
            self.counts["spooled"] += 1
            kept = self.keep_locked(entry)
            if not kept:
                self.counts["dropped"] += 1
        if first:
            log.warning(
                "The database refused an %s row (%s); rows wait in the spool %s until it takes them.",
                kind,
                failure.error,
                self.folder,
            )
        if not kept:
            log.error(
                "The spool cannot be written (%s) and holds %d rows in memory already; "
                "this %s row is lost: %r",
                self.last_spool_error,
                self.memory_limit,
                kind,
                row,
            )

    def keep_locked(self, entry: SpoolEntry) -> bool:
        """Write the entry to the file (after any rows waiting in memory), else keep it in memory;
        return False when it fits nowhere."""
        if (not self.memory or self.flush_memory_locked()) and self.write_locked(entry):
            self.pending_in_file += 1
            return True
        if len(self.memory) < self.memory_limit:
            self.memory.append(entry)
            self.start_worker_locked()  # it retries the rows while they wait
            return True
        return False

    def flush_memory_locked(self) -> bool:
        """Move the rows waiting in memory into the file, in order; tell whether all went."""
        if self.memory_replaying:
            return False
        while self.memory:
            if not self.write_locked(self.memory[0]):
                return False
            self.memory.popleft()
            self.pending_in_file += 1
        return True

    def write_locked(self, entry: SpoolEntry) -> bool:
        """Append one line to this process's file; on failure leave the file as it was."""
        item = {"key": entry.key, "kind": entry.kind, "row": entry.row}
        line = (json.dumps(item, default=str) + "\n").encode()
        try:
            if self.fd is None:
                self.open_file_locked()
            assert self.fd is not None
            written = os.write(self.fd, line)
            if written != len(line):
                raise OSError(f"only {written} of {len(line)} bytes were written")
        except OSError as exc:
            self.last_spool_error = str(exc)
            self.cut_back_locked()
            return False
        self.size += len(line)
        self.unsynced += 1
        self.start_worker_locked()
        if self.unsynced >= FSYNC_EVERY:
            self.wakeup.set()
        return True

    def open_file_locked(self) -> None:
        """Create this process's file and take its lock (held until the process ends)."""
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, self.file_id + SUFFIX)
        # Created under its spool name, the file would be free for a moment before the flock: a
        # replay of dead files could take it then, find it empty and unlink it, and this process
        # would append to a file no name leads to. The hidden name keeps replays off it until then.
        hidden = os.path.join(self.folder, HIDDEN_PREFIX + self.file_id + SUFFIX)
        fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, path)
            # The new name must outlive a power cut too, not only the line in it.
            folder_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(folder_fd)
            finally:
                os.close(folder_fd)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(hidden)
            raise
        self.fd, self.path, self.size, self.replayed_to = fd, path, 0, 0
        if not self.exit_hook_registered:
            atexit.register(self.close)
            self.exit_hook_registered = True

    def cut_back_locked(self) -> None:
        """Drop a line written in part, so the next one starts on a line of its own; when even that
        fails, hand the file over whole (its lock goes, so a replay elsewhere takes it) and start another."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, self.size)
        except OSError:
            log.error("The spool file %s cannot be cut back; it is left for the next replay.", self.path)
            os.close(self.fd)
            self.fd = self.path = None
            self.pending_in_file = 0
            self.file_id = f"{self.host}-{self.pid}-{secrets.token_hex(4)}"

    # --- the thread: fsync and replay ---------------------------------------------------------

    def start_worker_locked(self) -> None:
        """Start the spool's thread unless it runs (it ends when it has nothing left to do)."""
        if self.worker is None:
            self.worker = threading.Thread(target=self.work, name="activity-spool", daemon=True)
            self.worker.start()

    def work(self) -> None:
        """Fsync within FSYNC_SECONDS of a write; replay when a successful write asks for it, and
        while rows wait, on its own after retry_seconds (doubling up to RETRY_MAX_SECONDS), so a
        process that serves no further request still delivers its rows once the database is back."""
        delay = self.retry_seconds
        next_try = time.monotonic() + delay
        while True:
            self.wakeup.wait(FSYNC_SECONDS)
            self.wakeup.clear()
            self.sync()
            with self.lock:
                due = self.pending > 0 and time.monotonic() >= next_try
                wanted, self.replay_wanted = self.replay_wanted or due, False
            if wanted:
                self.replay_logged()
                delay = self.retry_seconds if self.pending == 0 else min(delay * 2, RETRY_MAX_SECONDS)
                next_try = time.monotonic() + delay
            with self.lock:
                if not self.replay_wanted and self.unsynced == 0 and self.pending == 0:
                    self.worker = None
                    return

    def sync(self) -> None:
        """Fsync this process's file (on a duplicate descriptor, so appends need not wait)."""
        with self.lock:
            if self.fd is None or self.unsynced == 0:
                return
            fd, count = os.dup(self.fd), self.unsynced
        try:
            os.fsync(fd)
        except OSError as exc:
            # The lines stay in the page cache (they outlive the process, not a power cut); trying
            # again every FSYNC_SECONDS would only repeat this line in the log.
            log.error("Could not fsync the spool file %s: %s", self.path, exc)
        finally:
            os.close(fd)
        with self.lock:
            self.unsynced = max(0, self.unsynced - count)

    def note_written(self) -> None:
        """Hear that the database took a write: writes work again, so replay what waits (on the thread)."""
        if (
            self.failure is None
            and not self.pending_in_file
            and not self.memory
            and not self.dead_files_waiting
        ):
            return  # the usual case, four attribute reads
        self.check_process()
        with self.lock:
            recovered = self.failure is not None
            self.failure = None
            if self.pending or self.dead_files_waiting:
                self.replay_wanted = True
                self.start_worker_locked()
        if recovered:
            log.warning("The database takes writes again; %d spooled rows are replayed.", self.pending)
        self.wakeup.set()

    def confirm_writes(self, conn: Connection, timeout_ms: int) -> None:
        """Hear that another write (health's probe) committed over ``conn``: while writes are
        failing, write the first waiting row over it, waiting at most ``timeout_ms``; when it goes
        in, writes work again (the failure clears and the replay takes the rest). The probe's own
        commit proves too little: a SQLite file at its page limit still updates the probe's row in
        place while every insert fails."""
        self.check_process()
        if self.failure is None:
            return
        if not self.replay_lock.acquire(blocking=False):
            return  # a replay is running; its first commit, or its failure, settles it
        try:
            entry = self.first_waiting()
            if entry is None:
                if self.pending:
                    return  # its line is torn or long: the replay deals with it
                self.note_written()  # the rows it failed on were dropped: the probe is all there is
                return
            try:
                with conn.storage.bounded_write(conn, timeout_ms):
                    inserted = write_one(conn, entry)
            except ROW_REJECTED + DatabaseError:
                return  # still failing, or a row only the replay can skip: the failure stands
            self.counts["replayed"] += inserted
            self.counts["duplicates"] += 1 - inserted
            self.replayed_own([entry])
        finally:
            with self.lock:
                self.memory_replaying = False
            self.replay_lock.release()
        self.note_written()

    def first_waiting(self) -> SpoolEntry | None:
        """Return the first row of this process not yet written (None when there is none, or its
        line is torn or longer than a read); a row in memory stays there (no flush) until it is
        marked written. Called holding replay_lock."""
        with self.lock:
            self.flush_memory_locked()
            if self.pending_in_file and self.fd is not None and self.size > self.replayed_to:
                try:
                    chunk = os.pread(self.fd, min(self.size - self.replayed_to, 64 * 1024), self.replayed_to)
                except OSError:
                    return None  # the replay reads it again, and reports what fails
                entries, torn = parse_lines(chunk[: chunk.find(b"\n") + 1], self.replayed_to)
                return entries[0] if entries and not torn else None
            if self.memory:
                self.memory_replaying = True
                return self.memory[0]
        return None

    def replay_logged(self) -> None:
        """Replay this process's rows; a failure is logged (the rows wait for the next try)."""
        try:
            with self.app.app_context():
                result = self.replay()
        except Exception:
            log.exception("Replaying the spool %s failed; its rows wait for the next try.", self.folder)
            return
        if result["error"] is not None:
            log.warning(
                "Replaying the spool %s stopped (%s); %d rows wait for the next try.",
                self.folder,
                result["error"],
                result["pending"],
            )

    # --- replay --------------------------------------------------------------------------------

    def replay(self) -> dict[str, Any]:
        """Replay this process's rows, then the files of dead processes in the folder, into the
        database; return what was done."""
        from activity_monitor.db import open_db

        self.check_process()
        result: dict[str, Any] = {"files_replayed": 0, "files_of_live_processes": 0, "error": None}
        with self.replay_lock:
            before = dict(self.counts)
            conn = None
            try:
                conn = open_db(self.app)
                self.replay_own(conn)
                self.replay_dead_files(conn, result)
            except DatabaseError as exc:
                result["error"] = str(exc)
                # Rows of dead files may be left: the next successful write tries them again.
                self.dead_files_waiting = self.files_waiting(others_only=True) > 0
            finally:
                if conn is not None:
                    conn.close()
            for name in ("replayed", "duplicates", "torn", "rejected"):
                result[name] = self.counts[name] - before[name]
        result["pending"] = self.pending
        return result

    def replay_own(self, conn: Connection) -> None:
        """Replay this process's file and memory, round after round while rows keep coming."""
        for _ in range(REPLAY_ROUNDS):
            self.sync()
            with self.lock:
                self.flush_memory_locked()
                base = self.replayed_to
                chunk = b""
                if self.fd is not None and self.size > base:
                    chunk = os.pread(self.fd, min(self.size - base, READ_BYTES), base)
                    if base + len(chunk) < self.size:
                        chunk = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only; the rest next round
                memory = list(self.memory)
                self.memory_replaying = bool(memory)
            try:
                entries, torn = parse_lines(chunk, base)
                self.counts["torn"] += torn
                if entries or memory:
                    self.write_entries(conn, entries + memory, self.replayed_own)
            finally:
                with self.lock:
                    self.memory_replaying = False
            with self.lock:
                # Every line read was written or skipped: nothing before the chunk's end is pending.
                self.replayed_to = max(self.replayed_to, base + len(chunk))
                if self.fd is not None and self.replayed_to == self.size and self.size:
                    os.ftruncate(self.fd, 0)
                    self.size = self.replayed_to = self.pending_in_file = 0
            if not entries and not memory:
                break

    def replayed_own(self, entries: list[SpoolEntry]) -> None:
        """Note rows of this process written (or skipped) for good."""
        with self.lock:
            for entry in entries:
                if entry.end is None:
                    self.memory.popleft()
                else:
                    self.replayed_to = max(self.replayed_to, entry.end)
                    self.pending_in_file = max(0, self.pending_in_file - 1)

    def replay_dead_files(self, conn: Connection, result: dict[str, Any]) -> None:
        """Replay, then remove, every file of the folder whose process is gone (its lock is free),
        whichever host wrote it: a host name tells nothing once a container restarts under a new
        one (a folder several hosts share must be on a filesystem whose locks they all see, as
        NFSv4's are)."""
        self.dead_files_waiting = False
        try:
            names = sorted(os.listdir(self.folder))
        except OSError:  # no folder yet, or none can be made: no file to replay
            return
        for name in names:
            path = os.path.join(self.folder, name)
            if not is_spool_file(name) or path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    result["files_of_live_processes"] += 1
                    continue
                if not same_file(path, fd):
                    continue  # another replay took it and removed it after this one opened it
                size = os.fstat(fd).st_size
                entries, torn = parse_lines(os.pread(fd, size, 0) if size else b"")
                self.counts["torn"] += torn
                self.write_entries(conn, entries, lambda _entries: None)
                # Another replay may have taken it first; its rows landed once all the same.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                result["files_replayed"] += 1
            finally:
                os.close(fd)

    def write_entries(
        self, conn: Connection, entries: list[SpoolEntry], done: Callable[[list[SpoolEntry]], None]
    ) -> None:
        """Write entries in order, a run at a time, calling ``done`` after each run is committed."""
        for run in runs_of_kind(entries):
            try:
                inserted, rejected = write_run(conn, run), 0
            except ROW_REJECTED:
                inserted, rejected = self.write_one_by_one(conn, run)
            self.counts["replayed"] += inserted
            self.counts["rejected"] += rejected
            self.counts["duplicates"] += len(run) - inserted - rejected
            # A committed run proves the database takes writes again.
            self.failure = None
            done(run)

    def write_one_by_one(self, conn: Connection, run: list[SpoolEntry]) -> tuple[int, int]:
        """Write a run that broke a constraint row by row, skipping (and logging) the rows that do;
        return how many were inserted and how many rejected."""
        inserted = rejected = 0
        for entry in run:
            try:
                inserted += write_run(conn, [entry])
            except ROW_REJECTED as exc:
                rejected += 1
                log.error(
                    "The database rejects the spooled %s row %r for good (%s); it is skipped.",
                    entry.kind,
                    entry.row,
                    exc,
                )
        return inserted, rejected

    # --- what health shows -----------------------------------------------------------------

    def files_waiting(self, others_only: bool = False) -> int:
        """Count the spool files of this install with rows in them (any process's, or with
        ``others_only`` those of other processes)."""
        try:
            with os.scandir(self.folder) as found:
                return sum(
                    1
                    for item in found
                    if is_spool_file(item.name)
                    and not (others_only and item.path == self.path)
                    and item.stat().st_size > 0
                )
        except OSError:
            return 0

    def health(self) -> dict[str, Any]:
        """Return the spool's check for /health: degraded while rows wait or some were dropped."""
        self.check_process()
        with self.lock:
            pending, in_memory = self.pending, len(self.memory)
            counts = dict(self.counts)
            failing = self.failure is not None
        files = self.files_waiting()
        problems = []
        if pending:
            problems.append(f"{pending} rows of this process wait to be written")
        if files and not pending:
            problems.append(f"{files} spool files of other processes wait to be replayed")
        if counts["dropped"]:
            problems.append(
                f"{counts['dropped']} rows were lost: neither the database nor the spool took them"
            )
        if counts["rejected"]:
            problems.append(f"{counts['rejected']} spooled rows were rejected by the database and logged")
        report: dict[str, Any] = {
            "status": "degraded" if problems else "ok",
            "spooled": counts["spooled"],
            "replayed": counts["replayed"],
            "duplicates_skipped": counts["duplicates"],
            "dropped": counts["dropped"],
            "torn_lines": counts["torn"],
            "rejected": counts["rejected"],
            "pending": pending,
            "in_memory": in_memory,
            "files": files,
            "writes_failing": failing,
            "last_error": self.last_error,
            "last_failure_at": self.last_failure_at,
            "folder": self.folder,
        }
        if problems:
            report["detail"] = "; ".join(problems) + "."
        return report

    def close(self) -> None:
        """At exit: write what memory holds if the file takes it, fsync, and let the file go (removed
        when empty; otherwise left, unlocked, for the next replay)."""
        if self.pid != os.getpid():
            return
        with self.lock:
            self.flush_memory_locked()
            lost = len(self.memory)
            fd, path, empty = self.fd, self.path, self.size == self.replayed_to
            self.fd = self.path = None
        if lost:
            log.error("The process ends with %d spooled rows only in memory; they are lost.", lost)
        if fd is None:
            return
        try:
            os.fsync(fd)
            if empty and path is not None:
                os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


def same_file(path: str, fd: int) -> bool:
    """Tell whether the path still names the file open at ``fd``."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def write_one(conn: Connection, entry: SpoolEntry) -> int:
    """Insert one spooled row through its table's owner, in the caller's transaction if any;
    return 1 when it was new, else 0."""
    from activity_monitor import activity_tracker, audit

    if entry.kind == "audit":
        return audit.write_spooled(conn, entry.key, entry.row)
    return activity_tracker.write_spooled(conn, [(entry.key, entry.row)])


def write_run(conn: Connection, run: list[SpoolEntry]) -> int:
    """Insert a run of one kind through its table's owner; return how many rows were new."""
    from activity_monitor import activity_tracker
    from activity_monitor.db import transaction

    if run[0].kind == "audit":
        return write_one(conn, run[0])
    # Not immediate: on PostgreSQL that would lock out the tracker's own inserts meanwhile.
    with transaction(conn, immediate=False):
        return activity_tracker.write_spooled(conn, [(entry.key, entry.row) for entry in run])


# --- the module's public surface --------------------------------------------------------------


def get_spool(app: Flask | None = None) -> EventSpool:
    """Return the app's spool."""
    return get_state(app).extra[STATE_KEY]


def spool(kind: str, row: dict[str, Any], error: BaseException) -> None:
    """Keep a row of the current app that the database refused, until a replay writes it."""
    get_spool().append(kind, row, error)


def note_written() -> None:
    """Tell the current app's spool that the database took a write (replays what waits)."""
    get_spool().note_written()


def current_failure(app: Flask) -> Failure | None:
    """Return the last refused write while writes keep failing (None once one succeeds again)."""
    return get_spool(app).failure


def confirm_writes(app: Flask, conn: Connection, timeout_ms: int) -> None:
    """Hear that a probe write committed over ``conn`` (see EventSpool.confirm_writes)."""
    get_spool(app).confirm_writes(conn, timeout_ms)


def replay_pending(app: Flask) -> dict[str, Any]:
    """Replay this process's spooled rows and the spool files of dead processes into the database
    (the leader's refresh job and ``flask activity replay-spool`` call it); return the counts of
    what was done: replayed, duplicates, torn, rejected, files_replayed, files_of_live_processes,
    pending and error (None, or why the database refused)."""
    with app.app_context():
        return get_spool(app).replay()


def health(app: Flask) -> dict[str, Any]:
    """Return the spool's check for /health."""
    return get_spool(app).health()


def init_app(app: Flask) -> None:
    """Give the app its spool under ACTIVITY_SPOOL_FOLDER (default: the instance folder's
    activity_spool), in a folder of the install's own so two databases never share files."""
    folder = app.config["ACTIVITY_SPOOL_FOLDER"] or os.path.join(app.instance_path, "activity_spool")
    app.config["ACTIVITY_SPOOL_FOLDER"] = folder
    state = get_state(app)
    state.extra[STATE_KEY] = EventSpool(
        app,
        os.path.join(folder, state.install_id),
        app.config["ACTIVITY_SPOOL_MEMORY_LIMIT"],
        app.config["ACTIVITY_SPOOL_RETRY_SECONDS"],
    )

