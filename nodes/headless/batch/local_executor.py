"""Local batch executor: N worker processes on this machine, each reusing its imports across jobs.

Workers are `multiprocessing` spawn processes, one job at a time each, talking to the coordinator
over their own pipe (so the coordinator always knows which job a worker holds). A worker that dies
mid-job (killed, out of memory, a crash in native code) is noticed through its process sentinel;
its job goes back on the queue for another worker (bounded retries) and a fresh worker replaces it.
A job over --timeout has its worker killed and fails (not retried: it would time out again).
Workers ignore SIGINT: on Ctrl-C the coordinator stops them and removes their staging folders.
Each worker's stdout/stderr (native libraries log there too) go to a log file in the batch folder.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Optional

from .jobs import remove_tree

#: A worker that dies before it is ready this many times in a row stops the batch (broken install).
MAX_START_FAILURES = 3


#: Thread pools a worker caps to its share of the cores (unless the user set them): N workers x all
#: cores each oversubscribes the CPU; Ray does the same for its tasks (OMP_NUM_THREADS = task CPUs).
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _limit_threads(threads: int) -> None:
    for name in THREAD_ENV_VARS:
        os.environ.setdefault(name, str(threads))
    try:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    except (ImportError, ValueError):
        pass
    try:
        import cv2

        cv2.setNumThreads(int(os.environ["OMP_NUM_THREADS"]))
    except (ImportError, ValueError, AttributeError):
        pass


def _worker_main(conn, input_dir: str, log_path: str, threads: int = 0) -> None:
    """Worker process: import once, then render jobs sent over `conn` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C and stops us
    if threads > 0:
        _limit_threads(threads)
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    except OSError:
        pass
    from ..executor import pack_node_classes
    from .jobs import render_job

    node_classes = pack_node_classes()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # nothing to tear down (staging is the coordinator's): skip a slow interpreter exit
        job_id = message["job_id"]

        def on_node(node_id: str, class_type: str, job_id=job_id) -> None:
            title = message["graph"].get(node_id, {}).get("_meta", {}).get("title") or class_type
            conn.send(("node", job_id, f"#{node_id} {title}"))

        try:
            outcome = render_job(message, input_dir=input_dir, staging_dir=message["staging_dir"],
                                 node_classes=node_classes, on_node=on_node)
        except Exception as exc:  # noqa: BLE001 - anything a job raises is that job's failure
            outcome = {"status": "failed", "staged": None, "verify": None, "timings": {}, "pid": os.getpid(),
                       "error": f"{type(exc).__name__}: {exc}"}
        print(f"[worker {os.getpid()}] {job_id}: {outcome['status']} {outcome.get('error') or ''}", flush=True)
        conn.send(("done", job_id, outcome))


@dataclass
class _Slot:
    name: str
    process: Any = None
    conn: Any = None
    pid: Optional[int] = None
    ready: bool = False
    item: Any = None
    started_at: float = 0.0
    staging_dir: Optional[str] = None
    start_failures: int = 0


@dataclass
class LocalExecutor:
    """Runs jobs in `workers` local processes.

    Attributes:
        workers: number of worker processes.
        retries: times a job whose worker died is tried again (on another worker).
        job_timeout_s: kill a job's worker after this long (None: no limit).
    """

    workers: int = 1
    retries: int = 2
    job_timeout_s: Optional[float] = None
    name: str = "local"
    _slots: list = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.workers} local worker process{'es' if self.workers != 1 else ''}"

    # -- life cycle ----------------------------------------------------------------------------
    def _spawn(self, slot: _Slot, ctx, input_dir: str, log_dir: str) -> None:
        parent, child = ctx.Pipe(duplex=True)
        log_path = os.path.join(log_dir, f"{slot.name}.log")
        threads = max(1, (os.cpu_count() or 1) // max(1, self.workers))
        process = ctx.Process(target=_worker_main, args=(child, input_dir, log_path, threads),
                              name=f"talkinghead-batch-{slot.name}", daemon=True)
        process.start()
        child.close()
        slot.process, slot.conn, slot.pid, slot.ready, slot.item = process, parent, process.pid, False, None

    def _stop_slot(self, slot: _Slot, kill: bool) -> None:
        process, slot.process = slot.process, None
        if slot.conn is not None:
            try:
                if not kill:
                    slot.conn.send(None)
            except (OSError, ValueError):
                pass
        if process is not None:
            if kill and process.is_alive():
                process.terminate()
            process.join(timeout=5 if not kill else 3)
            if process.is_alive():
                process.kill()
                process.join(timeout=3)
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None

    def shutdown(self, cancel: bool = False) -> None:
        if not cancel:  # ask every worker to stop first, then wait: they exit in parallel
            for slot in self._slots:
                try:
                    if slot.conn is not None:
                        slot.conn.send(None)
                except (OSError, ValueError):
                    pass
        for slot in self._slots:
            self._stop_slot(slot, kill=cancel)
            if slot.staging_dir:
                remove_tree(slot.staging_dir)
        self._slots = []

    # -- the loop --------------------------------------------------------------------------------
    def run(self, items: list, batch) -> None:
        """Runs every item; reports through `batch` (the coordinator): started/status/finished."""
        ctx = multiprocessing.get_context("spawn")
        queue = collections.deque(items)
        remaining = len(items)
        log_dir = batch.log_dir
        self._slots = [_Slot(name=f"w{i + 1}") for i in range(max(1, self.workers))]
        for slot in self._slots:
            self._spawn(slot, ctx, batch.input_dir, log_dir)
            batch.worker_status(slot.name, f"pid {slot.pid}: starting (importing the pipeline)")
        try:
            while remaining:
                for slot in self._slots:
                    if slot.ready and slot.item is None and queue:
                        item = queue.popleft()
                        self._send(slot, item, batch)
                waitables = []
                for slot in self._slots:
                    waitables += [slot.conn, slot.process.sentinel]
                ready = set(wait(waitables, timeout=0.5))
                now = time.monotonic()
                for slot in self._slots:
                    died = False
                    if slot.conn in ready:
                        try:
                            while slot.conn.poll():
                                remaining -= self._handle(slot, slot.conn.recv(), batch)
                        except (EOFError, OSError):
                            died = True
                    if died or (slot.process.sentinel in ready and not slot.process.is_alive()):
                        remaining -= self._worker_died(slot, queue, batch, ctx)
                    elif (slot.item is not None and self.job_timeout_s is not None
                          and now - slot.started_at > self.job_timeout_s):
                        item = slot.item
                        self._stop_slot(slot, kill=True)
                        self._clear_staging(slot)
                        slot.item = None
                        batch.finished(item, {"status": "failed", "error": f"timed out after {self.job_timeout_s:g} s "
                                              "(--timeout); its worker was stopped", "worker": slot.name,
                                              "timings": {}, "verify": None, "staged": None})
                        remaining -= 1
                        self._spawn(slot, ctx, batch.input_dir, log_dir)
                        batch.worker_status(slot.name, f"pid {slot.pid}: starting (replaces a timed-out worker)")
        finally:
            self.shutdown(cancel=remaining > 0)

    def _send(self, slot: _Slot, item, batch) -> None:
        slot.staging_dir = batch.new_staging_dir(item)
        payload = batch.payload(item)
        payload["staging_dir"] = slot.staging_dir
        slot.item = item
        slot.started_at = time.monotonic()
        batch.started(item, worker=slot.name, pid=slot.pid)
        slot.conn.send(payload)
        batch.worker_status(slot.name, f"pid {slot.pid}: {item.job.job_id} (attempt {item.attempts})")

    def _handle(self, slot: _Slot, message: tuple, batch) -> int:
        kind = message[0]
        if kind == "ready":
            slot.ready = True
            slot.start_failures = 0
            batch.worker_status(slot.name, f"pid {slot.pid}: idle")
        elif kind == "node" and slot.item is not None:
            batch.worker_status(slot.name, f"pid {slot.pid}: {message[1]} {message[2]}")
        elif kind == "done" and slot.item is not None:
            item, slot.item = slot.item, None
            outcome = dict(message[2])
            outcome["worker"] = f"{slot.name} (pid {slot.pid})"
            batch.finished(item, outcome)
            self._clear_staging(slot)
            batch.worker_status(slot.name, f"pid {slot.pid}: idle")
            return 1
        return 0

    def _clear_staging(self, slot: _Slot) -> None:
        if slot.staging_dir:
            remove_tree(slot.staging_dir)
            slot.staging_dir = None

    def _worker_died(self, slot: _Slot, queue, batch, ctx) -> int:
        """Requeues (or gives up on) the dead worker's job and starts a replacement."""
        code = slot.process.exitcode if slot.process is not None else None
        was_ready, item = slot.ready, slot.item
        self._stop_slot(slot, kill=True)
        self._clear_staging(slot)
        slot.item = None
        finished = 0
        reason = f"worker {slot.name} (pid {slot.pid}) died" + (f" (exit code {code})" if code is not None else "")
        if item is not None:
            if item.attempts <= self.retries:
                batch.retrying(item, reason)
                queue.appendleft(item)
            else:
                batch.finished(item, {"status": "lost", "error": f"{reason}; gave up after {item.attempts} attempts",
                                      "worker": slot.name, "timings": {}, "verify": None, "staged": None})
                finished = 1
        if not was_ready:
            slot.start_failures += 1
            if slot.start_failures >= MAX_START_FAILURES:
                raise RuntimeError(f"local worker {slot.name} died {slot.start_failures} times while starting; "
                                   f"see its log {os.path.join(batch.log_dir, slot.name + '.log')}")
        self._spawn(slot, ctx, batch.input_dir, batch.log_dir)
        batch.worker_status(slot.name, f"pid {slot.pid}: starting (replaces a dead worker)")
        return finished
