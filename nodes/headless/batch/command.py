"""`talkinghead batch`: many clips from one workflow, locally, on a Ray cluster or across ComfyUI servers.

    talkinghead batch JOBS.jsonl --workflow WORKFLOW_API.json [--out DIR] [--workers N]
                      [--ray auto|local|ADDRESS] [--server URL ...] [--consent] [--set NODE.input=value ...]

The coordinator (this module) reads the job lines (jobs.py), decides what still has to run
from the results manifest and the files in --out, hands the rest to one executor (local_executor.py,
ray_executor.py or server_executor.py), and for every job that finishes: moves its verified MP4 into
--out in one rename, and appends one JSONL record to the manifest.

Guarantees:
- resumable and idempotent: a job whose output exists and verifies (same inputs) is skipped; a job
  that failed with the same inputs is not retried unless --retry-failed; a changed job line reruns;
- failure isolation: a bad job fails alone with its error recorded; a dead worker or server has its
  jobs retried elsewhere (bounded by --retries); nothing partial ever appears in --out (outputs
  are written in a staging folder inside --out, then renamed); Ctrl-C stops the workers and
  removes the staging folder;
- one batch at a time per --out (a lock file).
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..command_line import UsageError, load_api_workflow
from .jobs import (BATCH_SUBFOLDER, MANIFEST_NAME, WORK_DIRNAME, BatchUsageError, Job, Manifest, confined_path,
                   expected_marks, file_sha256, load_jobs, parse_sets, remove_tree, resolve_workflow_path,
                   verify_output)

EXIT_OK, EXIT_JOBS_FAILED, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@dataclass
class BatchOptions:
    """What `talkinghead batch` was asked to do (see the command's --help for each)."""

    jobs_path: str
    workflow: str
    out_dir: str = "output"
    workers: int = 1
    ray: Optional[str] = None
    servers: list = field(default_factory=list)
    per_server: int = 1
    retries: int = 2
    job_timeout_s: Optional[float] = None
    consent: bool = False
    sets: dict = field(default_factory=dict)
    retry_failed: bool = False
    force: bool = False
    manifest_path: Optional[str] = None
    trust_anchor: Optional[str] = None
    job_cpus: float = 1.0
    job_gpus: float = 0.0
    verify_frames: Optional[int] = None
    progress: bool = True


@dataclass
class WorkItem:
    job: Job
    attempts: int = 0
    queued_at: float = 0.0
    started_at: float = 0.0
    staging_dirs: list = field(default_factory=list)


@dataclass
class BatchSummary:
    total: int = 0
    to_run: int = 0
    ok: int = 0
    failed: int = 0
    lost: int = 0
    done_before: int = 0
    failed_before: int = 0
    adopted: int = 0
    retried: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0
    manifest_path: str = ""
    executor: str = ""
    message: str = ""
    records: list = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_JOBS_FAILED if (self.failed or self.lost) else EXIT_OK


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _Lock:
    """An exclusive lock on <out>/.talkinghead-batch/lock, released when the process ends."""

    def __init__(self, path: str):
        self.path = path
        self.handle = None

    def acquire(self) -> None:
        import fcntl

        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            self.handle = None
            raise BatchUsageError(f"--out: another batch is running on this folder (lock {self.path})")

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class _Progress:
    """One overall bar (done, failed, rate, ETA) plus one status line per worker, on stderr."""

    def __init__(self, total: int, enabled: bool):
        self.enabled = enabled
        self.total = total
        self.ok = self.failed = self.lost = 0
        self.started = time.monotonic()
        self.bar = None
        self.lines: dict[str, Any] = {}
        self.tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        if enabled:
            from tqdm import tqdm

            self._tqdm = tqdm
            self.bar = tqdm(total=total, desc="batch", unit="job", file=sys.stderr, position=0, mininterval=0.5,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} jobs "
                                       "[{elapsed}<{remaining}] {postfix}")
            self._postfix()

    def rate_per_min(self) -> float:
        finished = self.ok + self.failed + self.lost
        elapsed = time.monotonic() - self.started
        return 60.0 * finished / elapsed if elapsed > 0 else 0.0

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"ok {self.ok}, failed {self.failed}, lost {self.lost}, "
                                     f"{self.rate_per_min():.1f} jobs/min", refresh=False)

    def finished(self, status: str) -> None:
        setattr(self, status, getattr(self, status) + 1)
        if self.bar is not None:
            self._postfix()
            self.bar.update(1)

    def worker(self, name: str, text: str) -> None:
        if not self.enabled or not self.tty:  # status lines redraw in place: only on a terminal
            return
        line = self.lines.get(name)
        if line is None:
            line = self._tqdm(total=0, position=len(self.lines) + 1, file=sys.stderr, leave=False,
                              bar_format="{desc}", mininterval=0.5)
            self.lines[name] = line
        line.set_description_str(f"  {name}: {text}"[:150])

    def log(self, text: str) -> None:
        if self.enabled:
            self._tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        for line in self.lines.values():
            line.close()
        if self.bar is not None:
            self.bar.close()


class Batch:
    """The coordinator side of one run: executors call started / worker_status / retrying / finished."""

    def __init__(self, options: BatchOptions, graph: dict, on_event: Optional[Callable[[str, dict], None]] = None):
        self.options = options
        self.graph = graph
        self.on_event = on_event
        self.out_dir = os.path.abspath(options.out_dir)
        self.work_dir = os.path.join(self.out_dir, WORK_DIRNAME)
        self.staging_root = os.path.join(self.work_dir, "staging")
        self.input_dir = os.path.join(self.work_dir, "input")
        self.log_dir = os.path.join(self.work_dir, "logs")
        self.manifest = Manifest(os.path.abspath(options.manifest_path or os.path.join(self.out_dir, MANIFEST_NAME)))
        self.summary = BatchSummary(manifest_path=self.manifest.path)
        self.expect = expected_marks(graph)
        self.trust_anchor_pem = None
        if options.trust_anchor:
            try:
                with open(options.trust_anchor, "rb") as handle:
                    self.trust_anchor_pem = handle.read()
            except OSError as exc:
                raise BatchUsageError(f"--trust-anchor: cannot read {options.trust_anchor!r} ({exc})")
        self.progress: Optional[_Progress] = None
        self._lock = threading.RLock()

    # -- called by executors (any thread) ----------------------------------------------------------
    def payload(self, item: WorkItem) -> dict:
        """What a worker needs for one attempt (plain data: picklable, no paths of this machine but inputs)."""
        from .jobs import attempt_graph

        return {"job_id": item.job.job_id, "graph": attempt_graph(item.job, f"a{item.attempts}"),
                "expect": dict(self.expect), "trust_anchor_pem": self.trust_anchor_pem,
                "verify_frames": self.options.verify_frames}

    def new_staging_dir(self, item: WorkItem) -> str:
        path = os.path.join(self.staging_root, f"{item.job.job_id}-a{item.attempts}-{uuid.uuid4().hex[:6]}")
        os.makedirs(path, exist_ok=True)
        with self._lock:
            item.staging_dirs.append(path)
        return path

    def started(self, item: WorkItem, worker: str, pid: Optional[int]) -> None:
        with self._lock:
            item.attempts += 1
            if item.attempts == 1:
                item.started_at = time.monotonic()
        self._event("started", {"job_id": item.job.job_id, "worker": worker, "pid": pid, "attempt": item.attempts})

    def worker_status(self, worker: str, text: str) -> None:
        with self._lock:
            if self.progress is not None:
                self.progress.worker(worker, text)
        self._event("status", {"worker": worker, "text": text})

    def retrying(self, item: WorkItem, reason: str) -> None:
        with self._lock:
            self.summary.retried += 1
            self.log(f"retry {item.job.job_id}: {reason} (attempt {item.attempts + 1} of "
                     f"{self.options.retries + 1})")
        self._event("retry", {"job_id": item.job.job_id, "reason": reason, "attempts": item.attempts})

    def log(self, text: str) -> None:
        with self._lock:
            if self.progress is not None:
                self.progress.log(text)

    def finished(self, item: WorkItem, outcome: dict) -> None:
        """Moves a verified output into --out (one rename) and appends the job's record."""
        job = item.job
        status = outcome.get("status", "failed")
        record = {"job_id": job.job_id, "line": job.line_no, "status": status, "output": None,
                  "attempts": max(item.attempts, 1), "worker": outcome.get("worker"), "executor": self.executor_name,
                  "verify": outcome.get("verify"), "error": outcome.get("error"), "job_hash": job.job_hash,
                  "sha256": None, "finished_at": _now_iso(),
                  "timings": {**(outcome.get("timings") or {}),
                              "queued_s": round(max(0.0, (item.started_at or time.monotonic()) - item.queued_at), 3),
                              "total_s": round(time.monotonic() - item.queued_at, 3)}}
        try:
            if status == "ok":
                final = confined_path(self.out_dir, job.output)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                staged = outcome.get("staged")
                if outcome.get("data") is not None:  # bytes from a Ray task
                    staged = os.path.join(self.new_staging_dir(item), os.path.basename(final))
                    with open(staged, "wb") as handle:
                        handle.write(outcome["data"])
                os.replace(staged, final)
                record["output"] = job.output
                record["sha256"] = file_sha256(final)
        except Exception as exc:  # noqa: BLE001 - a job that cannot be placed fails alone
            record["status"] = status = "failed"
            record["error"] = f"could not write the output into --out: {type(exc).__name__}: {exc}"
        finally:
            for path in item.staging_dirs:
                remove_tree(path)
            item.staging_dirs.clear()
        with self._lock:
            self.manifest.append(record)
            self.summary.records.append(record)
            setattr(self.summary, status, getattr(self.summary, status) + 1)
            if self.progress is not None:
                self.progress.finished(status)
                if status == "ok":
                    self.progress.log(f"ok      {job.job_id} -> {os.path.join(self.out_dir, job.output)} "
                                      f"({record['timings']['total_s']:.1f} s, attempt {record['attempts']})")
                else:
                    self.progress.log(f"{status.upper():7} {job.job_id}: {record['error']}")
        self._event("finished", record)

    def _event(self, kind: str, data: dict) -> None:
        if self.on_event is not None:
            self.on_event(kind, data)

    executor_name = ""

    # -- planning ------------------------------------------------------------------------------------
    def plan(self, jobs: list[Job]) -> list[Job]:
        """Which jobs still have to run; records the skips' reasons in the summary."""
        previous = self.manifest.read()
        to_run = []
        for job in jobs:
            if job.error is not None:
                job.job_hash = file_sha256_text(f"error|{job.line_no}|{job.error}")
            last = previous.get(job.job_id)
            same = last is not None and last.get("job_hash") == job.job_hash
            if self.options.force:
                to_run.append(job)
                continue
            final = None
            try:
                final = confined_path(self.out_dir, job.output)
            except Exception:  # noqa: BLE001 - reported when the job runs
                pass
            if job.error is None and final and os.path.isfile(final):
                if same and last.get("status") == "ok" and last.get("sha256") == file_sha256(final):
                    self.summary.done_before += 1
                    continue
                if last is None or same:
                    # an output with no (or a stale) record: keep it if it verifies
                    check = verify_output(final, self.expect, self.trust_anchor_pem, self.options.verify_frames)
                    if check["ok"]:
                        self.summary.adopted += 1
                        self.manifest.append({"job_id": job.job_id, "line": job.line_no, "status": "ok",
                                              "output": job.output, "attempts": 0, "worker": None,
                                              "executor": "existing file", "verify": check, "error": None,
                                              "job_hash": job.job_hash, "sha256": file_sha256(final),
                                              "finished_at": _now_iso(), "timings": {}})
                        continue
            if same and last.get("status") == "failed" and not self.options.retry_failed:
                self.summary.failed_before += 1
                continue
            to_run.append(job)
        return to_run


def file_sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:32]


def make_executor(options: BatchOptions):
    if options.servers and options.ray:
        raise BatchUsageError("give either --server or --ray, not both")
    if options.servers:
        from .server_executor import ServerExecutor

        if options.per_server not in (1, 2):
            raise BatchUsageError("--per-server: 1 or 2 jobs in flight per server")
        return ServerExecutor(urls=list(options.servers), per_server=options.per_server, retries=options.retries,
                              job_timeout_s=options.job_timeout_s)
    if options.ray:
        from .ray_executor import RayExecutor

        return RayExecutor(address=None if options.ray == "this-process" else options.ray, retries=options.retries,
                           num_cpus=options.job_cpus, num_gpus=options.job_gpus,
                           local_cpus=options.workers if options.ray == "local" and options.workers > 1 else None,
                           job_timeout_s=options.job_timeout_s)
    from .local_executor import LocalExecutor

    if options.workers < 1:
        raise BatchUsageError("--workers: at least 1")
    return LocalExecutor(workers=options.workers, retries=options.retries, job_timeout_s=options.job_timeout_s)


def _load_workflow(value: str) -> dict:
    path = resolve_workflow_path(value)
    try:
        return load_api_workflow(str(path))
    except UsageError as exc:
        raise BatchUsageError(str(exc)) from exc


def run_batch(options: BatchOptions, *, executor=None, on_event: Optional[Callable[[str, dict], None]] = None
              ) -> BatchSummary:
    """Runs a batch; returns what happened (also in the manifest).

    Raises:
        BatchUsageError: the batch was refused before anything ran.
        KeyboardInterrupt is caught: workers are stopped, staging removed, summary.interrupted set.
    """
    graph = _load_workflow(options.workflow)
    jobs = load_jobs(options.jobs_path, graph, sets=options.sets, consent=options.consent)
    executor = executor or make_executor(options)
    batch = Batch(options, graph, on_event)
    batch.executor_name = executor.name
    summary = batch.summary
    summary.total = len(jobs)
    summary.executor = executor.describe()
    os.makedirs(batch.work_dir, exist_ok=True)
    lock = _Lock(os.path.join(batch.work_dir, "lock"))
    lock.acquire()
    started = time.monotonic()
    try:
        remove_tree(batch.staging_root)  # left by a hard-killed earlier run: never an output
        os.makedirs(batch.staging_root, exist_ok=True)
        os.makedirs(batch.log_dir, exist_ok=True)
        if batch.manifest.skipped_lines:
            print(f"note: {batch.manifest.skipped_lines} unreadable line(s) in {batch.manifest.path} ignored",
                  file=sys.stderr)
        to_run = batch.plan(jobs)
        summary.to_run = len(to_run)
        if not to_run:
            summary.message = _nothing_to_do(summary)
            return summary
        if hasattr(executor, "check_reachable"):
            dead = executor.check_reachable()
            if len(dead) == len(options.servers):
                raise ServerUnreachableError(
                    f"--server: no ComfyUI server answers ({', '.join(dead)}). Start them or check the addresses.")
        items = []
        now = time.monotonic()
        for job in to_run:
            item = WorkItem(job=job, queued_at=now)
            if job.error is not None:
                batch.finished(item, {"status": "failed", "error": job.error, "verify": None, "timings": {}})
                continue
            items.append(item)
        _stage_inputs(batch, items, executor)
        batch.progress = _Progress(len(items), options.progress) if items else None
        if batch.progress is not None:
            batch.progress.log(f"{len(jobs)} jobs: {summary.done_before + summary.adopted} done earlier, "
                               f"{summary.failed_before} failed earlier, {len(to_run)} to run on {executor.describe()}")
        try:
            if items:
                executor.run(items, batch)
        except KeyboardInterrupt:
            summary.interrupted = True
            try:
                executor.shutdown(cancel=True)
            except KeyboardInterrupt:
                executor.shutdown(cancel=True)
        finally:
            if batch.progress is not None:
                batch.progress.close()
    finally:
        remove_tree(batch.staging_root)
        remove_tree(batch.input_dir)
        lock.release()
        summary.elapsed_s = time.monotonic() - started
    ran = summary.ok + summary.failed + summary.lost
    rate = 60.0 * ran / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    if summary.interrupted:
        summary.message = (f"Interrupted after {summary.elapsed_s:.0f} s: {summary.ok} ok, {summary.failed} failed; "
                           f"{summary.to_run - ran} not finished (no partial files left; rerun to continue). "
                           f"Manifest: {summary.manifest_path}")
    else:
        summary.message = (f"Done in {summary.elapsed_s:.0f} s: {summary.ok} ok, {summary.failed} failed, "
                           f"{summary.lost} lost ({rate:.1f} jobs/min, {summary.retried} retried); "
                           f"{summary.done_before + summary.adopted} done earlier. Manifest: {summary.manifest_path}")
    return summary


class ServerUnreachableError(BatchUsageError):
    pass


def _nothing_to_do(summary: BatchSummary) -> str:
    parts = [f"{summary.done_before + summary.adopted} output(s) exist and verify"]
    if summary.failed_before:
        parts.append(f"{summary.failed_before} job(s) failed earlier with the same inputs "
                     "(--retry-failed runs them again)")
    return f"Nothing to do: {'; '.join(parts)}. Manifest: {summary.manifest_path}"


def _stage_inputs(batch: Batch, items: list, executor) -> None:
    """Local workers read inputs from <out>/.talkinghead-batch/input/talkinghead-batch/<hash>.<ext> (copied once)."""
    if executor.name != "local":
        return
    import shutil

    folder = os.path.join(batch.input_dir, BATCH_SUBFOLDER)
    os.makedirs(folder, exist_ok=True)
    for item in items:
        for name, source in item.job.files.items():
            target = os.path.join(batch.input_dir, name)
            if not os.path.exists(target):
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copyfile(source, target)


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------

def add_parser(commands) -> argparse.ArgumentParser:
    batch = commands.add_parser(
        "batch", help="render many clips from one workflow: local workers, a Ray cluster, or ComfyUI servers",
        description="Each line of JOBS.jsonl is a JSON object that sets inputs of the workflow for one clip: "
                    "id, output, image, audio, script, transcript, prompt, negative, seed, width, height, voice, "
                    "consent, set ({\"NODE.input\": value}), resources ({\"num_cpus\", \"num_gpus\"} for Ray). "
                    "Relative paths are read from the JOBS file's folder. Finished jobs are appended to "
                    "OUT/batch-manifest.jsonl; a rerun skips outputs that exist and verify. See docs/batch.md.")
    batch.add_argument("jobs", help="JSONL file: one job (JSON object) per line")
    batch.add_argument("--workflow", required=True,
                       help="API-format workflow (a file, or a shipped one by name, e.g. script_to_video)")
    batch.add_argument("--out", default="output", help="folder for the MP4s and the manifest (default: ./output)")
    where = batch.add_argument_group("where jobs run (default: local worker processes)")
    where.add_argument("--workers", type=int, default=1, help="local worker processes (default 1); with "
                       "--ray local: the CPUs of the local Ray")
    where.add_argument("--ray", metavar="auto|local|ADDRESS",
                       help="run each job as a Ray task: auto joins the running cluster, local starts one here, "
                       "else a cluster address (needs pip install 'talkinghead[ray]')")
    where.add_argument("--job-cpus", type=float, default=1.0, help="CPUs each Ray job declares (default 1)")
    where.add_argument("--job-gpus", type=float, default=0.0, help="GPUs each Ray job declares (default 0)")
    where.add_argument("--server", action="append", default=[], metavar="URL",
                       help="ComfyUI server to dispatch to (repeatable), e.g. http://127.0.0.1:8188")
    where.add_argument("--per-server", type=int, default=1, choices=(1, 2),
                       help="jobs in flight per server (default 1; 2 keeps a server busy between jobs)")
    batch.add_argument("--consent", action="store_true",
                       help="attest that you have the right (the consent of the person shown) to animate every "
                       "portrait in this batch; without it each job line needs \"consent\": true")
    batch.add_argument("--set", action="append", default=[], metavar="NODE_ID.input=value",
                       help="override a node input for every job (value is JSON when it parses, else text)")
    batch.add_argument("--retries", type=int, default=2,
                       help="times a job whose worker or server died is retried elsewhere (default 2)")
    batch.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                       help="fail a job that runs longer than this (default: no limit)")
    batch.add_argument("--retry-failed", action="store_true", help="run again jobs that failed with the same inputs")
    batch.add_argument("--force", action="store_true", help="run every job, even those done already")
    batch.add_argument("--manifest", help=f"results manifest (default: OUT/{MANIFEST_NAME})")
    batch.add_argument("--trust-anchor", help="PEM of a CA you trust: verification then reports Trusted")
    batch.add_argument("--verify-frames", type=int, default=None, metavar="N",
                       help="read only the first N frames when detecting the watermark (default: all, as "
                       "`talkinghead verify` does; ~100 keeps verification constant for long clips)")
    batch.add_argument("--quiet", action="store_true", help="no progress bars, only the summary")
    batch.set_defaults(handler=cmd_batch)
    return batch


def cmd_batch(args) -> int:
    try:
        options = BatchOptions(
            jobs_path=args.jobs, workflow=args.workflow, out_dir=args.out, workers=args.workers, ray=args.ray,
            servers=args.server, per_server=args.per_server, retries=max(0, args.retries),
            job_timeout_s=args.timeout, consent=args.consent, sets=parse_sets(args.set),
            retry_failed=args.retry_failed, force=args.force, manifest_path=args.manifest,
            trust_anchor=args.trust_anchor, job_cpus=args.job_cpus, job_gpus=args.job_gpus,
            verify_frames=args.verify_frames if args.verify_frames and args.verify_frames > 0 else None,
            progress=not args.quiet)
        previous = None
        if threading.current_thread() is threading.main_thread():
            def _terminate(_signum, _frame):
                raise KeyboardInterrupt
            previous = signal.signal(signal.SIGTERM, _terminate)  # stop cleanly on SIGTERM too
        try:
            summary = run_batch(options)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    except ServerUnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except BatchUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except RuntimeError as exc:  # Ray missing or unreachable, workers that cannot start
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(summary.message)
    for record in summary.records:
        if record["status"] != "ok":
            print(f"  {record['status']}: {record['job_id']}: {record['error']}")
    return summary.exit_code
