"""`talkinghead batch --server A --server B` against two real ComfyUI servers; B is stopped mid-batch.

B's in-flight job moves to A (a retry recorded in the manifest) and the batch completes: every good
job verified in --out, the faceless one failed alone with the ReferenceEncoder's message.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest

from batch_helpers import manifest_records, no_partial_files, write_jobs
from comfy_server import ComfyServer
from talkinghead.nodes.headless.batch.command import BatchOptions, run_batch
from talkinghead.nodes.headless.batch.jobs import shipped_workflow

pytestmark = pytest.mark.slow

JOBS, BAD = 8, 5


@pytest.fixture(scope="module")
def two_servers(comfyui_dir, artifacts_dir, tmp_path_factory):
    python = os.environ.get("TALKINGHEAD_COMFYUI_PYTHON") or sys.executable
    servers = [ComfyServer(comfyui_dir, tmp_path_factory.mktemp(f"comfy-batch-{name}"), python=python,
                           log_path=artifacts_dir / f"comfyui-batch-server-{name}.log") for name in "AB"]
    errors = []

    def start(server):
        try:
            server.start(timeout=float(os.environ.get("TALKINGHEAD_COMFYUI_START_TIMEOUT", "180")))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(server,)) for server in servers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_a_server_stopped_mid_batch_hands_its_jobs_to_the_other(two_servers, tmp_path):
    server_a, server_b = two_servers
    jobs = write_jobs(tmp_path / "jobs", JOBS, bad={BAD})
    out = tmp_path / "out"
    b_host = server_b.url.split("//", 1)[1]
    state = {"b_jobs": set(), "stopper": None}

    def on_event(kind, data):
        # stop B while its second job renders (its first one finished there, so it was really in use)
        if kind != "status" or not data["worker"].startswith(b_host) or state["stopper"] is not None:
            return
        job_id = data["text"].split(" ", 1)[0].rstrip(":")
        if job_id.startswith("clip-"):
            state["b_jobs"].add(job_id)
        if len(state["b_jobs"]) >= 2 and "Temporal Sampler" in data["text"]:
            state["stopper"] = threading.Thread(target=server_b.stop)
            state["stopper"].start()

    events = []
    opts = BatchOptions(jobs_path=str(jobs), workflow=str(shipped_workflow("script_to_video")), out_dir=str(out),
                        servers=[server_a.url, server_b.url], per_server=1, retries=2, progress=False)
    summary = run_batch(opts, on_event=lambda kind, data: (events.append((kind, data)), on_event(kind, data)))
    state["stopper"].join()
    print(summary.message)
    assert server_b.proc is None  # really stopped
    assert (summary.ok, summary.failed, summary.lost) == (JOBS - 1, 1, 0), [
        r for r in summary.records if r["status"] != "ok"]
    records = {r["job_id"]: r for r in manifest_records(out)}
    bad = records[f"clip-{BAD:02d}"]
    assert bad["status"] == "failed" and "no human face found" in bad["error"]
    for job_id, record in records.items():
        if job_id != f"clip-{BAD:02d}":
            assert record["status"] == "ok" and record["verify"]["ok"], record
            assert (out / record["output"]).is_file()
    # the job B held when it went away was retried, and finished on A
    retried = [data for kind, data in events if kind == "retry"]
    assert retried and "stopped answering" in retried[0]["reason"]
    moved = records[retried[0]["job_id"]]
    assert moved["attempts"] >= 2 and moved["worker"].startswith(server_a.url.split("//", 1)[1])
    # both servers did work before B stopped
    workers = {r["worker"].split("#")[0] for r in records.values() if r["status"] == "ok"}
    assert workers == {server_a.url.split("//", 1)[1], b_host}
    assert no_partial_files(out) == []
