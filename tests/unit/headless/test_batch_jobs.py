"""`talkinghead batch` without rendering: job lines -> graphs, confinement, consent, manifest, resume logic.

A fake executor stands in for the workers, so these run in a second or two; the real executors are
tested in test_batch_local.py, test_batch_ray.py and tests/integration/test_batch_servers.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from talkinghead.nodes.headless.batch import command as batch_module
from talkinghead.nodes.headless.batch.command import BatchOptions, run_batch
from talkinghead.nodes.headless.batch.jobs import (BatchUsageError, Manifest, check_output_name, JobError,
                                                   load_jobs, parse_sets, shipped_workflow)
from talkinghead.nodes.headless.cli import main
from talkinghead.nodes.headless.command_line import load_api_workflow

SCRIPT_WF = shipped_workflow("script_to_video")
AUDIO_WF = shipped_workflow("talking_head")


def write_jobs(path: Path, jobs: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in jobs))
    return path


@pytest.fixture
def portrait(tmp_path) -> Path:
    path = tmp_path / "presenter.png"
    path.write_bytes(b"\x89PNG fake portrait bytes")
    return path


def test_shipped_workflows_resolve_by_name():
    assert SCRIPT_WF.name == "script_to_video.api.json" and SCRIPT_WF.is_file()
    with pytest.raises(BatchUsageError):
        shipped_workflow("no_such_workflow")


def test_job_keys_set_the_matching_node_inputs(tmp_path, portrait):
    template = load_api_workflow(str(SCRIPT_WF))
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", [
        {"id": "a", "image": "presenter.png", "script": "Hi there.", "seed": 7, "width": 256, "height": 256,
         "consent": True, "voice": "en-gb", "set": {"6.motion_strength": 0.5}, "output": "team/a-take1"},
    ])
    (job,) = load_jobs(str(jobs_file), template, sets={"3.crf": 23})
    assert job.error is None
    graph = job.graph
    speak, mux, reference, sampler = graph["2"]["inputs"], graph["3"]["inputs"], graph["5"]["inputs"], graph["6"]["inputs"]
    assert speak["text"] == "Hi there." and speak["voice"] == "en-gb"
    assert (sampler["seed"], sampler["width"], sampler["height"], sampler["motion_strength"]) == (7, 256, 256, 0.5)
    assert reference["consent"] is True and mux["crf"] == 23
    # the portrait is referenced by content hash inside the batch input subfolder, shared by all jobs
    (name,) = job.files
    assert graph["1"]["inputs"]["image"] == name and name.startswith("talkinghead-batch/") and name.endswith(".png")
    assert job.files[name] == os.path.realpath(portrait)
    assert job.output == "team/a-take1.mp4"
    # the template itself is untouched
    assert template["2"]["inputs"]["text"] != "Hi there."


def test_consent_is_never_assumed(tmp_path, portrait):
    template = load_api_workflow(str(SCRIPT_WF))
    assert template["5"]["inputs"]["consent"] is False  # shipped workflows leave it false on purpose
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", [{"id": "a", "script": "Hi."}, {"id": "b", "consent": True}])
    a, b = load_jobs(str(jobs_file), template)
    assert a.error and "consent" in a.error and "--consent" in a.error
    assert b.error is None and b.graph["5"]["inputs"]["consent"] is True
    (a,) = load_jobs(str(write_jobs(tmp_path / "one.jsonl", [{"id": "a"}])), template, consent=True)
    assert a.error is None and a.graph["5"]["inputs"]["consent"] is True


def test_a_bad_line_fails_alone_and_duplicates_refuse_the_batch(tmp_path, portrait):
    template = load_api_workflow(str(SCRIPT_WF))
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", [
        {"id": "ok", "script": "Fine."},
        "{not json",
        {"id": "typo", "scirpt": "Oops."},
        {"id": "missing", "image": "nowhere.png"},
        {"id": "escape", "output": "../outside"},
        {"id": "abs", "output": "/etc/x"},
        {"id": "seed", "seed": "three"},
        "# a comment line",
        "",
    ])
    jobs = {job.job_id: job for job in load_jobs(str(jobs_file), template, consent=True)}
    assert jobs["ok"].error is None
    assert "not valid JSON" in jobs["line-2"].error
    assert "unknown key(s) scirpt" in jobs["typo"].error
    assert "no file at" in jobs["missing"].error
    assert "not a safe relative name" in jobs["escape"].error
    assert "absolute" in jobs["abs"].error
    assert "whole number" in jobs["seed"].error
    with pytest.raises(BatchUsageError, match="same id"):
        load_jobs(str(write_jobs(tmp_path / "dup.jsonl", [{"id": "x"}, {"id": "x"}])), template)
    with pytest.raises(BatchUsageError, match="same output"):
        load_jobs(str(write_jobs(tmp_path / "dup2.jsonl", [{"id": "x", "output": "o"}, {"id": "y", "output": "o"}])),
                  template)


def test_keys_the_workflow_cannot_take_name_the_alternative(tmp_path):
    template = load_api_workflow(str(AUDIO_WF))
    (job,) = load_jobs(str(write_jobs(tmp_path / "jobs.jsonl", [{"id": "a", "script": "Hi."}])), template, consent=True)
    assert "no TalkingHeadSpeak node" in job.error and "\"audio\"" in job.error


@pytest.mark.parametrize("name", ["a/../../b", "..", "a//b", "x\x00y", ""])
def test_output_names_cannot_escape(name):
    with pytest.raises(JobError):
        check_output_name(name, "output")


def test_parse_sets():
    assert parse_sets(["6.width=256", "2.text=Hello there", "5.consent=true"]) == {
        "6.width": 256, "2.text": "Hello there", "5.consent": True}
    with pytest.raises(BatchUsageError):
        parse_sets(["width=256"])


def test_manifest_ignores_a_torn_last_line(tmp_path):
    manifest = Manifest(str(tmp_path / "m.jsonl"))
    manifest.append({"job_id": "a", "status": "failed"})
    manifest.append({"job_id": "a", "status": "ok"})
    with open(manifest.path, "a") as handle:
        handle.write('{"job_id": "b", "sta')
    assert {k: v["status"] for k, v in manifest.read().items()} == {"a": "ok"}
    assert manifest.skipped_lines == 1


# -- the coordinator with a fake executor -----------------------------------------------------------

class FakeExecutor:
    """Writes a small file per job; a job whose script contains "bad" fails; can stop with Ctrl-C."""

    name = "fake"

    def __init__(self, interrupt_after=None):
        self.ran = []
        self.interrupt_after = interrupt_after

    def describe(self):
        return "fake"

    def shutdown(self, cancel=False):
        pass

    def run(self, items, batch):
        for item in items:
            batch.started(item, worker="fake-1", pid=os.getpid())
            staging = batch.new_staging_dir(item)
            staged = os.path.join(staging, "clip.mp4")
            Path(staged).write_bytes(b"rendered " + item.job.job_id.encode())
            if self.interrupt_after is not None and len(self.ran) == self.interrupt_after:
                raise KeyboardInterrupt
            self.ran.append(item.job.job_id)
            if "bad" in item.job.graph["2"]["inputs"]["text"]:
                batch.finished(item, {"status": "failed", "error": "Node #5 failed: no face", "timings": {}})
            else:
                batch.finished(item, {"status": "ok", "staged": staged, "verify": {"ok": True}, "timings": {"run_s": 0.1}})


@pytest.fixture
def fake_verify(monkeypatch):
    """Existing outputs "verify" when they hold what FakeExecutor wrote."""
    def verify(path, expect=None, trust_anchor_pem=None, max_frames=None):
        return {"ok": Path(path).read_bytes().startswith(b"rendered "), "problems": []}
    monkeypatch.setattr(batch_module, "verify_output", verify)


def options(tmp_path, jobs_file, **extra):
    return BatchOptions(jobs_path=str(jobs_file), workflow=str(SCRIPT_WF), out_dir=str(tmp_path / "out"),
                        consent=True, progress=False, **extra)


def test_resume_skips_done_and_failed_jobs_and_reruns_changed_ones(tmp_path, fake_verify):
    lines = [{"id": f"j{i}", "script": "bad take" if i == 3 else f"Line {i}."} for i in range(6)]
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", lines)
    executor = FakeExecutor()
    summary = run_batch(options(tmp_path, jobs_file), executor=executor)
    assert (summary.ok, summary.failed, summary.exit_code) == (5, 1, 1)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.mp4")) == [f"j{i}.mp4" for i in range(6) if i != 3]
    records = [json.loads(line) for line in (out / "batch-manifest.jsonl").read_text().splitlines()]
    assert len(records) == 6
    failed = next(r for r in records if r["status"] == "failed")
    assert failed["job_id"] == "j3" and failed["error"] == "Node #5 failed: no face" and failed["output"] is None
    ok = next(r for r in records if r["job_id"] == "j0")
    assert ok["output"] == "j0.mp4" and len(ok["sha256"]) == 64 and ok["attempts"] == 1 and "total_s" in ok["timings"]
    assert not list((out / ".talkinghead-batch").glob("staging/*"))

    # rerun: nothing to do, and it says so
    executor = FakeExecutor()
    summary = run_batch(options(tmp_path, jobs_file), executor=executor)
    assert executor.ran == [] and summary.to_run == 0 and summary.exit_code == 0
    assert summary.message.startswith("Nothing to do: 5 output(s) exist and verify; 1 job(s) failed earlier")
    assert len((out / "batch-manifest.jsonl").read_text().splitlines()) == 6

    # a changed line, a deleted output and --retry-failed each bring back only their job
    lines[1]["script"] = "Line one, rewritten."
    write_jobs(jobs_file, lines)
    (out / "j4.mp4").unlink()
    executor = FakeExecutor()
    run_batch(options(tmp_path, jobs_file), executor=executor)
    assert sorted(executor.ran) == ["j1", "j4"]
    executor = FakeExecutor()
    run_batch(options(tmp_path, jobs_file, retry_failed=True), executor=executor)
    assert executor.ran == ["j3"]

    # an output with no record is adopted when it verifies, re-rendered when it does not
    (out / "batch-manifest.jsonl").unlink()
    (out / "j2.mp4").write_bytes(b"garbage")
    executor = FakeExecutor()
    summary = run_batch(options(tmp_path, jobs_file), executor=executor)
    assert sorted(executor.ran) == ["j2", "j3"] and summary.adopted == 4


def test_ctrl_c_leaves_no_partial_outputs(tmp_path, fake_verify):
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", [{"id": f"j{i}", "script": f"Line {i}."} for i in range(5)])
    summary = run_batch(options(tmp_path, jobs_file), executor=FakeExecutor(interrupt_after=2))
    out = tmp_path / "out"
    assert summary.interrupted and summary.exit_code == 130 and summary.ok == 2
    assert sorted(p.name for p in out.rglob("*.mp4")) == ["j0.mp4", "j1.mp4"]  # the staged third one is gone
    assert not (out / ".talkinghead-batch" / "staging").exists()
    executor = FakeExecutor()
    run_batch(options(tmp_path, jobs_file), executor=executor)
    assert executor.ran == ["j2", "j3", "j4"]


def test_cli_batch_without_consent_fails_each_job_with_the_reason(tmp_path, capsys):
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", [{"id": "a", "script": "Hi."}, {"id": "b", "script": "Yo."}])
    code = main(["batch", str(jobs_file), "--workflow", "script_to_video", "--out", str(tmp_path / "out"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "Done in" in captured.out and "0 ok, 2 failed" in captured.out
    assert "failed: a: consent: the workflow's Reference Encoder (node #5) needs consent" in captured.out
    assert not list((tmp_path / "out").glob("*.mp4"))
    # refused batches exit 2
    assert main(["batch", str(tmp_path / "none.jsonl"), "--workflow", "script_to_video"]) == 2
    assert main(["batch", str(jobs_file), "--workflow", "script_to_video", "--ray", "auto",
                 "--server", "http://127.0.0.1:9"]) == 2


def test_cli_batch_with_no_server_answering_exits_3(tmp_path, capsys):
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", [{"id": "a", "script": "Hi."}])
    code = main(["batch", str(jobs_file), "--workflow", "script_to_video", "--out", str(tmp_path / "out"),
                 "--consent", "--server", "http://127.0.0.1:9", "--quiet"])
    assert code == 3
    assert "no ComfyUI server answers" in capsys.readouterr().err
