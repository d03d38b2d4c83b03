"""The local executor for real: 20 short clips on 2 worker processes, one faceless portrait, one killed worker.

Checks: 19 MP4s in --out, each verified (watermark + C2PA, recorded in the manifest); the bad job
recorded with the ReferenceEncoder's message; the job of the killed worker retried on a fresh worker;
nothing partial left; a rerun does nothing and says so.
"""

from __future__ import annotations

import pytest

from batch_helpers import first_pid_killer, manifest_records, no_partial_files, write_jobs
from talkinghead.nodes.headless.batch.command import BatchOptions, run_batch
from talkinghead.nodes.headless.batch.jobs import shipped_workflow, verify_output

pytestmark = pytest.mark.slow

BAD = 7


def test_twenty_jobs_two_workers_one_bad_one_worker_killed(tmp_path):
    jobs = write_jobs(tmp_path / "jobs", 20, bad={BAD})
    out = tmp_path / "out"
    opts = BatchOptions(jobs_path=str(jobs), workflow=str(shipped_workflow("script_to_video")), out_dir=str(out),
                        workers=2, retries=2, progress=False)
    on_event, killed = first_pid_killer(kill_after_s=1.0)
    events = []
    summary = run_batch(opts, on_event=lambda kind, data: (events.append((kind, data)), on_event(kind, data)))
    print(summary.message)
    assert (summary.ok, summary.failed, summary.lost) == (19, 1, 0), summary.records
    records = {r["job_id"]: r for r in manifest_records(out)}
    assert len(records) == 20
    bad = records[f"clip-{BAD:02d}"]
    assert bad["status"] == "failed" and bad["output"] is None
    assert "ReferenceEncoder" in bad["error"] and "no human face found" in bad["error"]
    for job_id, record in records.items():
        if job_id == f"clip-{BAD:02d}":
            continue
        assert record["status"] == "ok" and record["output"] == f"{job_id}.mp4"
        assert record["verify"]["ok"] and record["verify"]["watermark"]["found"]
        assert record["verify"]["manifest"]["state"] in ("Valid", "Trusted")
        assert record["timings"]["run_s"] > 0 and record["timings"]["verify_s"] > 0
    # the worker killed mid-job: its job went to another worker and finished
    assert killed["killed"] is not None
    retried = [data["job_id"] for kind, data in events if kind == "retry"]
    assert retried, "the killed worker's job was not retried"
    assert all(records[job_id]["status"] == "ok" and records[job_id]["attempts"] >= 2 for job_id in retried)
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(f"{j}.mp4" for j in records if j != f"clip-{BAD:02d}")
    assert no_partial_files(out) == []
    # the outputs verify the way `talkinghead verify` reads them
    assert verify_output(str(out / "clip-00.mp4"))["ok"]

    again = run_batch(opts)
    assert again.to_run == 0 and again.ok == 0 and again.exit_code == 0
    assert again.message.startswith("Nothing to do: 19 output(s) exist and verify; 1 job(s) failed earlier")
    assert len(manifest_records(out)) == 20


def test_ctrl_c_stops_cleanly_and_leaves_no_partial_outputs(tmp_path):
    """SIGINT to the whole process group (what Ctrl-C does) of `talkinghead batch` mid-run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    jobs = write_jobs(tmp_path / "jobs", 12)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "talkinghead.nodes.headless.cli", "batch", str(jobs), "--workflow", "script_to_video",
         "--out", str(out), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        for line in process.stderr:  # "ok      clip-.. -> ..." once a job is in place
            if line.startswith("ok ") or time.monotonic() > deadline:
                break
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr[-2000:]
    assert "Interrupted after" in stdout and "no partial files left" in stdout
    assert no_partial_files(out) == []
    assert not (out / ".talkinghead-batch" / "staging").exists()
    finished = [r for r in manifest_records(out) if r["status"] == "ok"]
    assert 1 <= len(finished) < 12
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(r["output"] for r in finished)
    # no worker survives the coordinator (exited ones reparented to a container init that never reaps them
    # show up as zombies: they are gone, only their exit status is left)
    time.sleep(1)
    table = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(process.pid)], capture_output=True,
                           text=True).stdout
    alive = [line for line in table.splitlines() if line.split()[1:2] and not line.split()[1].startswith("Z")]
    assert alive == []
