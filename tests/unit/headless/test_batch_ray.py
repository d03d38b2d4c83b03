"""The Ray executor on a local Ray started by the test (ray.init(num_cpus=2)): the same 20 jobs, one worker killed.

The task reports the pid it runs in; the test SIGKILLs the first one mid-job and relies on the task's
max_retries: that job is rerun by Ray and every good job completes, the faceless one fails alone.
Skipped only when ray cannot be imported (pip install 'talkinghead[ray]').
"""

from __future__ import annotations

import os

import pytest

from batch_helpers import first_pid_killer, manifest_records, no_partial_files, write_jobs
from talkinghead.nodes.headless.batch.command import BatchOptions, run_batch
from talkinghead.nodes.headless.batch.jobs import shipped_workflow
from talkinghead.nodes.headless.batch.ray_executor import RayExecutor, ray_or_reason

pytestmark = pytest.mark.slow

ray, REASON = ray_or_reason()
BAD = 7


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    if ray is None:
        pytest.skip(REASON)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # a private temp dir: no clash with another Ray on this machine; nothing listens beyond loopback use
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()


def test_twenty_jobs_on_ray_with_a_worker_killed_mid_job(local_ray, tmp_path):
    jobs = write_jobs(tmp_path / "jobs", 20, bad={BAD})
    out = tmp_path / "out"
    opts = BatchOptions(jobs_path=str(jobs), workflow=str(shipped_workflow("script_to_video")), out_dir=str(out),
                        retries=2, progress=False)
    on_event, killed = first_pid_killer()
    events = []
    summary = run_batch(opts, executor=RayExecutor(address=None, retries=2),
                        on_event=lambda kind, data: (events.append((kind, data)), on_event(kind, data)))
    print(summary.message)
    assert local_ray.is_initialized()  # the executor leaves a Ray it did not start running
    assert (summary.ok, summary.failed, summary.lost) == (19, 1, 0), [r for r in summary.records if r["status"] != "ok"]
    records = {r["job_id"]: r for r in manifest_records(out)}
    bad = records[f"clip-{BAD:02d}"]
    assert bad["status"] == "failed" and "no human face found" in bad["error"] and bad["attempts"] == 1
    for job_id, record in records.items():
        if job_id != f"clip-{BAD:02d}":
            assert record["status"] == "ok" and record["verify"]["ok"] and record["executor"] == "ray"
            assert (out / record["output"]).is_file()
    assert killed["killed"] is not None
    retried = {data["job_id"] for kind, data in events if kind == "retry"}
    assert killed["killed"] in retried and records[killed["killed"]]["attempts"] >= 2
    assert records[killed["killed"]]["status"] == "ok"
    assert no_partial_files(out) == []
