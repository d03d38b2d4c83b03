"""Ray batch executor: each job is a Ray task with its CPU/GPU needs declared.

- Inputs travel through Ray's object store: each distinct input file (the presenter's portrait is
  usually shared by every job) is `ray.put` once and handed to every task that needs it; a node
  fetches an object once and keeps it while it is referenced.
- The task renders in a temporary folder on whichever node runs it, verifies the MP4 there
  (watermark + C2PA, the `talkinghead verify` checks), and returns the bytes; the coordinator writes
  them into --out atomically. Nothing needs shared storage.
- A worker process that dies mid-task (killed, OOM, node lost) is Ray's business: the task is
  declared with `max_retries`, so Ray reruns it elsewhere; a job error (no face, corrupt audio) is
  caught inside the task and returned as a failure, never retried (`retry_exceptions=False`).
- Each task reports "started on pid P at node N" and its current node through a small status actor,
  so the coordinator shows per-worker status (and tests can kill the pid a job runs in).
- No network beyond the cluster: usage stats off, no dashboard. `--ray auto` joins a running
  cluster (`ray start --head` / RAY_ADDRESS), `--ray local` starts one on this machine, anything
  else is a cluster address (`ray://host:10001` or `host:6379`). Workers need this package
  installed (pip install talkinghead[ray,graph,faces] on every node).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Optional

_NODE_CLASSES = None  # per Ray worker process: the node classes, imported once and reused across tasks


def ray_or_reason() -> tuple[Any, str]:
    try:
        import ray  # noqa: PLC0415
    except ImportError as exc:
        return None, f"Ray is not installed ({exc}): pip install 'talkinghead[ray]'"
    return ray, ""


def _render_task(payload: dict, inputs: dict, board) -> dict:
    """The Ray task: fetch inputs from the object store, render, verify, return the MP4 bytes."""
    import ray  # noqa: PLC0415

    job_id, pid = payload["job_id"], os.getpid()
    worker = f"pid {pid}@{ray.util.get_node_ip_address()}"
    board.report.remote(("start", job_id, pid, worker))

    from ..executor import pack_node_classes
    from .jobs import BATCH_SUBFOLDER, render_job

    global _NODE_CLASSES
    if _NODE_CLASSES is None:
        _NODE_CLASSES = pack_node_classes()
    with tempfile.TemporaryDirectory(prefix="talkinghead-batch-") as temp:
        input_dir = os.path.join(temp, "input")
        os.makedirs(os.path.join(input_dir, BATCH_SUBFOLDER))
        for name, ref in inputs.items():
            base = os.path.basename(name)  # names are talkinghead-batch/<hash>.<ext>: never a path of ours to trust
            with open(os.path.join(input_dir, BATCH_SUBFOLDER, base), "wb") as handle:
                handle.write(ray.get(ref))

        def on_node(node_id: str, class_type: str) -> None:
            title = payload["graph"].get(node_id, {}).get("_meta", {}).get("title") or class_type
            board.report.remote(("node", job_id, pid, worker, f"#{node_id} {title}"))

        outcome = render_job(payload, input_dir=input_dir, staging_dir=os.path.join(temp, "out"),
                             node_classes=_NODE_CLASSES, on_node=on_node)
        outcome["worker"] = worker
        if outcome["status"] == "ok":
            with open(outcome["staged"], "rb") as handle:
                outcome["data"] = handle.read()
        outcome["staged"] = None
    return outcome


class _StatusBoard:
    """A tiny actor the tasks report to; the coordinator drains it."""

    def __init__(self):
        self.events = []

    def report(self, event) -> None:
        self.events.append(event)

    def drain(self) -> list:
        events, self.events = self.events, []
        return events


@dataclass
class RayExecutor:
    """Runs each job as a Ray task.

    Attributes:
        address: "auto" (join a running cluster), "local" (start one here) or a cluster address;
            None: use the Ray already initialised in this process (tests call ray.init themselves).
        retries: Ray's max_retries for a task whose worker died.
        num_cpus / num_gpus: what each job declares (a job line's "resources" overrides them).
        local_cpus: CPUs of a Ray started with address "local" (None: all).
    """

    address: Optional[str] = None
    retries: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    local_cpus: Optional[int] = None
    job_timeout_s: Optional[float] = None
    name: str = "ray"
    _started_ray: bool = False
    _pending: dict = field(default_factory=dict)

    def describe(self) -> str:
        return f"Ray ({self.address or 'this process'}; {self.num_cpus:g} CPU, {self.num_gpus:g} GPU per job)"

    def connect(self):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
        ray, reason = ray_or_reason()
        if ray is None:
            raise RuntimeError(reason)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": True, "logging_level": "warning"}
            if self.address in (None, "local"):
                kwargs["num_cpus"] = self.local_cpus
            else:
                kwargs["address"] = self.address
            ray.init(**kwargs)
            self._started_ray = True
        return ray

    def shutdown(self, cancel: bool = False) -> None:
        ray, _ = ray_or_reason()
        if ray is None or not ray.is_initialized():
            return
        if cancel:
            for ref in list(self._pending):
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort while stopping
                    pass
        self._pending = {}
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def run(self, items: list, batch) -> None:
        ray = self.connect()
        board = ray.remote(num_cpus=0)(_StatusBoard).remote()
        task = ray.remote(_render_task)
        shared: dict[str, Any] = {}  # input name -> ObjectRef, each file put once
        starts: dict[str, int] = {}
        by_job = {}
        for item in items:
            inputs = {}
            for name, source in item.job.files.items():
                if name not in shared:
                    with open(source, "rb") as handle:
                        shared[name] = ray.put(handle.read())
                inputs[name] = shared[name]
            resources = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, **item.job.resources}
            ref = task.options(max_retries=self.retries, retry_exceptions=False,
                               name=f"talkinghead-batch:{item.job.job_id}", **resources).remote(
                batch.payload(item), inputs, board)
            self._pending[ref] = item
            by_job[item.job.job_id] = item
        deadline_of: dict[Any, float] = {}
        try:
            while self._pending:
                done, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0.5)
                for event in ray.get(board.drain.remote()):
                    kind, job_id, pid, worker = event[:4]
                    item = by_job.get(job_id)
                    if item is None:
                        continue
                    if kind == "start":
                        starts[job_id] = starts.get(job_id, 0) + 1
                        if starts[job_id] > 1:
                            batch.retrying(item, "its Ray worker died; Ray reran the task")
                        batch.started(item, worker=worker, pid=pid)
                        for ref, pending_item in self._pending.items():
                            if pending_item is item:
                                deadline_of[ref] = time.monotonic() + (self.job_timeout_s or float("inf"))
                        batch.worker_status(worker, f"{job_id} (attempt {item.attempts})")
                    elif kind == "node":
                        batch.worker_status(worker, f"{job_id} {event[4]}")
                for ref in done:
                    item = self._pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        outcome = {"status": "lost", "verify": None, "timings": {}, "staged": None,
                                   "error": f"Ray gave up on the task after {item.attempts} attempt(s): "
                                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
                    batch.finished(item, outcome)
                now = time.monotonic()
                for ref in [r for r, deadline in deadline_of.items() if r in self._pending and now > deadline]:
                    item = self._pending.pop(ref)
                    ray.cancel(ref, force=True)
                    batch.finished(item, {"status": "failed", "verify": None, "timings": {}, "staged": None,
                                          "error": f"timed out after {self.job_timeout_s:g} s (--timeout); "
                                                   "the task was cancelled"})
        finally:
            cancel = bool(self._pending)
            self.shutdown(cancel=cancel)
