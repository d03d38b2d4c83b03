"""Batch jobs: JSONL job lines -> per-job API graphs, the results manifest, output verification.

Everything here is light (no torch, no ComfyUI) so the coordinator, the local workers, Ray tasks
and the ComfyUI-server dispatcher share it. The executors live in local_executor.py, ray_executor.py
and server_executor.py; the coordinator and the `talkinghead batch` command in command.py.

A job line is one JSON object; every key is optional:

    {"id": "clip-001", "output": "presenter/clip-001", "image": "alice.png", "script": "Hello.",
     "audio": "hello.wav", "transcript": "Hello.", "prompt": "studio light", "negative": "",
     "seed": 3, "width": 256, "height": 256, "voice": "en-us", "consent": true,
     "set": {"6.motion_strength": 0.5}, "resources": {"num_cpus": 1, "num_gpus": 0}}

Each key sets the matching input of every node of the matching type in the workflow (see
JOB_KEYS); `set` overrides any input by node id, like `talkinghead run --set`. Relative file paths
are resolved against the folder of the JOBS file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ....pipeline.core.content_hash import sha256_file

PACKAGE_ROOT = Path(__file__).resolve().parents[3]

#: job key -> ((class_type, input name), ...): every node of these types in the workflow gets the value.
JOB_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "image": (("TalkingHeadLoadImage", "image"), ("LoadImage", "image")),
    "audio": (("TalkingHeadLoadAudio", "audio"), ("LoadAudio", "audio")),
    "script": (("TalkingHeadSpeak", "text"),),
    "voice": (("TalkingHeadSpeak", "voice"),),
    "transcript": (("TalkingHeadVisemeAligner", "transcript"),),
    "prompt": (("TalkingHeadPromptRefiner", "prompt"),),
    "negative": (("TalkingHeadPromptRefiner", "negative"),),
    "seed": (("TalkingHeadTemporalSampler", "seed"),),
    "width": (("TalkingHeadTemporalSampler", "width"),),
    "height": (("TalkingHeadTemporalSampler", "height"),),
    "consent": (("TalkingHeadReferenceEncoder", "consent"),),
}
#: Keys whose value is a file (copied or uploaded under a content-hash name) unless it is a built-in sample.
FILE_KEYS = ("image", "audio")
OTHER_KEYS = ("id", "output", "set", "resources")
MUX_CLASS = "TalkingHeadMux"
REFERENCE_CLASS = "TalkingHeadReferenceEncoder"
#: Subfolder (of the input folder, of ComfyUI's input/ and output/) that batch inputs and outputs use.
BATCH_SUBFOLDER = "talkinghead-batch"
#: The coordinator's private folder inside --out: staging of outputs, copied inputs, worker logs, lock.
WORK_DIRNAME = ".talkinghead-batch"
MANIFEST_NAME = "batch-manifest.jsonl"

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_NAME_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")


class BatchUsageError(Exception):
    """The batch as a whole is refused (bad workflow, duplicate ids, ...): nothing runs."""


class JobError(Exception):
    """One job line is unusable; that job fails alone with this message."""


# ------------------------------------------------------------------------------------------------
# workflows
# ------------------------------------------------------------------------------------------------

def shipped_workflow(name: str) -> Path:
    """Path of a shipped API workflow by short name ("script_to_video"), in whichever layout is there.

    Looks in workflows/api/NAME.api.json, then workflows/NAME.api.json (older layout)."""
    stem = name[:-len(".api.json")] if name.endswith(".api.json") else name
    for candidate in (PACKAGE_ROOT / "workflows" / "api" / f"{stem}.api.json",
                      PACKAGE_ROOT / "workflows" / f"{stem}.api.json"):
        if candidate.is_file():
            return candidate
    raise BatchUsageError(f"--workflow: no shipped workflow named {name!r} (looked in workflows/api/ and workflows/)")


def resolve_workflow_path(value: str) -> Path:
    """A file path as given, else a shipped workflow's short name."""
    path = Path(value)
    if path.is_file():
        return path
    if os.sep not in value and "/" not in value:
        try:
            return shipped_workflow(value)
        except BatchUsageError:
            pass
    raise BatchUsageError(f"--workflow: no file at {value!r} (nor a shipped workflow of that name)")


def nodes_of(graph: dict, class_type: str) -> list[str]:
    return sorted((nid for nid, node in graph.items() if node.get("class_type") == class_type),
                  key=lambda n: (len(n), n))


# ------------------------------------------------------------------------------------------------
# jobs
# ------------------------------------------------------------------------------------------------

@dataclass
class Job:
    """One line of the JOBS file, resolved.

    Attributes:
        job_id: unique id (the line's "id", else "line-N").
        output: output path relative to --out, ending in .mp4.
        line_no: 1-based line in the JOBS file.
        spec: the line's JSON object (None when it did not parse).
        error: why the line is unusable (the job then fails alone), else None.
        files: input name used in the graph -> local source path (content-hash names).
        graph: the job's API graph (inputs set), without the per-attempt output prefix.
        job_hash: hash of the graph and of the input files' contents (a changed job reruns).
        resources: Ray resources for this job ({"num_cpus": .., "num_gpus": ..}).
    """

    job_id: str
    output: str
    line_no: int
    spec: Optional[dict] = None
    error: Optional[str] = None
    files: dict[str, str] = field(default_factory=dict)
    graph: Optional[dict] = None
    job_hash: Optional[str] = None
    resources: dict[str, float] = field(default_factory=dict)


#: Hex SHA-256 of a file (job inputs, outputs); the pipeline's own helper.
file_sha256 = sha256_file


def check_output_name(value: Any, what: str) -> str:
    """A relative path confined to --out, ending in .mp4; refuses anything that could escape."""
    if not isinstance(value, str) or not value.strip():
        raise JobError(f"{what}: must be a non-empty name, e.g. \"clip-001\"")
    name = value.strip().replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise JobError(f"{what}: {value!r} is absolute; give a name relative to --out")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", "..") or not _NAME_PART_RE.match(part):
            raise JobError(f"{what}: {value!r} is not a safe relative name (letters, digits, '.', '_', '-', ' ' "
                           "and '/' between folders; no '..')")
    if not name.lower().endswith(".mp4"):
        name += ".mp4"
    return name


def confined_path(out_dir: str, relative: str) -> str:
    """out_dir/relative, refusing (JobError) anything that resolves outside out_dir."""
    base = os.path.realpath(out_dir)
    candidate = os.path.realpath(os.path.join(base, relative))
    if os.path.commonpath([base, candidate]) != base:
        raise JobError(f"output: {relative!r} resolves outside --out ({base})")
    return candidate


def _is_sample(key: str, value: str) -> bool:
    return isinstance(value, str) and value.startswith("(sample)")


def _apply_set(graph: dict, assignments: dict, what: str) -> None:
    for target, value in assignments.items():
        node_id, dot, input_name = str(target).rpartition(".")
        if not dot or not node_id or not input_name:
            raise JobError(f"{what}: {target!r}: expected \"NODE_ID.input\", for example \"6.seed\"")
        if node_id not in graph:
            raise JobError(f"{what}: {target!r}: the workflow has no node {node_id!r}")
        graph[node_id].setdefault("inputs", {})[input_name] = value


def _set_key(graph: dict, key: str, value: Any) -> None:
    targets = [(node_id, input_name) for class_type, input_name in JOB_KEYS[key]
               for node_id in nodes_of(graph, class_type)]
    if not targets:
        types = " or ".join(class_type for class_type, _ in JOB_KEYS[key])
        hint = ""
        if key == "script" and nodes_of(graph, "TalkingHeadLoadAudio"):
            hint = "; this workflow takes recorded speech: give \"audio\" instead"
        elif key == "audio" and nodes_of(graph, "TalkingHeadSpeak"):
            hint = "; this workflow speaks a script: give \"script\" instead"
        raise JobError(f"{key}: the workflow has no {types} node to take it{hint}")
    for node_id, input_name in targets:
        graph[node_id].setdefault("inputs", {})[input_name] = value


def _typed(key: str, value: Any) -> Any:
    if key in ("seed", "width", "height"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise JobError(f"{key}: must be a whole number, got {value!r}")
    elif key == "consent":
        if not isinstance(value, bool):
            raise JobError(f"consent: must be true or false, got {value!r}")
    elif not isinstance(value, str):
        raise JobError(f"{key}: must be text, got {value!r}")
    return value


def build_job(spec: Any, line_no: int, template: dict, *, base_dir: str, sets: dict,
              consent: bool, hash_cache: Optional[dict] = None) -> Job:
    """Turns one parsed job line into a Job with its graph; problems land in `job.error`."""
    default_id = f"line-{line_no}"
    job_id = default_id
    if isinstance(spec, dict) and isinstance(spec.get("id"), (str, int)) and not isinstance(spec.get("id"), bool):
        job_id = str(spec["id"])
    job = Job(job_id=job_id, output=f"{job_id}.mp4" if _ID_RE.match(job_id) else f"{default_id}.mp4",
              line_no=line_no, spec=spec if isinstance(spec, dict) else None)
    try:
        if not isinstance(spec, dict):
            raise JobError("the line is not a JSON object")
        if not _ID_RE.match(job_id):
            raise JobError(f"id: {job_id!r} is not a usable id (letters, digits, '.', '_', '-'; up to 128)")
        unknown = sorted(set(spec) - set(JOB_KEYS) - set(OTHER_KEYS))
        if unknown:
            raise JobError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(list(JOB_KEYS) + list(OTHER_KEYS))}")
        job.output = check_output_name(spec.get("output", job_id), "output")
        graph = json.loads(json.dumps(template))
        _apply_set(graph, sets, "--set")
        if consent:
            for node_id in nodes_of(graph, REFERENCE_CLASS):
                graph[node_id]["inputs"]["consent"] = True
        hash_cache = {} if hash_cache is None else hash_cache
        for key in JOB_KEYS:
            if key not in spec:
                continue
            value = _typed(key, spec[key])
            if key in FILE_KEYS and not _is_sample(key, value):
                source = os.path.join(base_dir, os.path.expanduser(value))
                if not os.path.isfile(source):
                    raise JobError(f"{key}: no file at {source!r}")
                source = os.path.realpath(source)
                if source not in hash_cache:
                    hash_cache[source] = file_sha256(source)
                ext = os.path.splitext(source)[1].lower()
                value = f"{BATCH_SUBFOLDER}/{hash_cache[source][:24]}{ext}"
                job.files[value] = source
            _set_key(graph, key, value)
        if "set" in spec:
            if not isinstance(spec["set"], dict):
                raise JobError("set: must be an object {\"NODE_ID.input\": value}")
            _apply_set(graph, spec["set"], "set")
        resources = spec.get("resources", {})
        if not isinstance(resources, dict) or not all(
                k in ("num_cpus", "num_gpus") and isinstance(v, (int, float)) and v >= 0 for k, v in resources.items()):
            raise JobError("resources: must be {\"num_cpus\": N, \"num_gpus\": N}")
        job.resources = dict(resources)
        if not nodes_of(graph, MUX_CLASS):
            raise JobError("the workflow has no Mux node: batch jobs produce one MP4 each")
        for node_id in nodes_of(graph, REFERENCE_CLASS):
            if graph[node_id].get("inputs", {}).get("consent") is not True:
                raise JobError(
                    f"consent: the workflow's Reference Encoder (node #{node_id}) needs consent. Add \"consent\": true "
                    "to the job line, or pass --consent, to attest that you have the right to animate this portrait")
        job.graph = graph
        digest = hashlib.sha256(json.dumps(graph, sort_keys=True).encode())
        for name in sorted(job.files):
            digest.update(f"{name}={hash_cache[job.files[name]]}".encode())
        job.job_hash = digest.hexdigest()[:32]
    except JobError as exc:
        job.error = str(exc)
    return job


def load_jobs(jobs_path: str, template: dict, *, sets: Optional[dict] = None, consent: bool = False) -> list[Job]:
    """Reads the JOBS file; bad lines become failed jobs, duplicate ids/outputs refuse the batch."""
    try:
        text = Path(jobs_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatchUsageError(f"JOBS: no file at {jobs_path!r}")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchUsageError(f"JOBS: cannot read {jobs_path!r} ({exc})")
    base_dir = os.path.dirname(os.path.abspath(jobs_path))
    jobs: list[Job] = []
    hash_cache: dict = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            spec = json.loads(line)
        except json.JSONDecodeError as exc:
            job = Job(job_id=f"line-{line_no}", output=f"line-{line_no}.mp4", line_no=line_no,
                      error=f"line {line_no} is not valid JSON ({exc.msg} at column {exc.colno})")
        else:
            job = build_job(spec, line_no, template, base_dir=base_dir, sets=sets or {}, consent=consent,
                            hash_cache=hash_cache)
        jobs.append(job)
    if not jobs:
        raise BatchUsageError(f"JOBS: {jobs_path!r} holds no job lines (one JSON object per line)")
    for attribute, what in (("job_id", "id"), ("output", "output")):
        seen: dict[str, int] = {}
        for job in jobs:
            key = getattr(job, attribute).lower()
            if key in seen:
                raise BatchUsageError(f"JOBS: lines {seen[key]} and {job.line_no} have the same {what} "
                                      f"{getattr(job, attribute)!r}; each job needs its own")
            seen[key] = job.line_no
    return jobs


def parse_sets(assignments: Iterable[str]) -> dict:
    """`--set NODE.input=value` (JSON values when they parse) -> {"NODE.input": value}."""
    result = {}
    for assignment in assignments or []:
        target, separator, raw = assignment.partition("=")
        if not separator or "." not in target:
            raise BatchUsageError(f"--set {assignment!r}: expected NODE_ID.input=value, for example --set 6.width=256")
        try:
            result[target] = json.loads(raw)
        except json.JSONDecodeError:
            result[target] = raw
    return result


def attempt_graph(job: Job, attempt_tag: str) -> dict:
    """The job's graph with every Mux writing under talkinghead-batch/<job>-<tag> (unique per attempt)."""
    graph = json.loads(json.dumps(job.graph))
    for node_id in nodes_of(graph, MUX_CLASS):
        graph[node_id]["inputs"]["filename_prefix"] = f"{BATCH_SUBFOLDER}/{job.job_id}-{attempt_tag}-{node_id}"
    return graph


def expected_marks(graph: dict) -> dict:
    """What verification must find: the Mux's watermark and content credentials flags."""
    mux = [graph[node_id].get("inputs", {}) for node_id in nodes_of(graph, MUX_CLASS)]
    return {"watermark": any(inputs.get("watermark", True) is True for inputs in mux),
            "content_credentials": any(inputs.get("content_credentials", True) is True for inputs in mux)}


def mp4_outputs(outputs: dict) -> list[dict]:
    """The Mux file entries ({filename, subfolder, type}) among ComfyUI-shaped UI outputs."""
    found = []
    for node_outputs in outputs.values():
        if not isinstance(node_outputs, dict) or not node_outputs.get("talkinghead_mux"):
            continue
        for info in node_outputs.get("images", []) or []:
            if isinstance(info, dict) and str(info.get("filename", "")).lower().endswith(".mp4"):
                found.append(info)
    return found


# ------------------------------------------------------------------------------------------------
# verification (the checks `talkinghead verify` makes: C2PA manifest + invisible watermark)
# ------------------------------------------------------------------------------------------------

def verify_output(path: str, expect: Optional[dict] = None, trust_anchor_pem: Optional[bytes] = None,
                  max_frames: Optional[int] = None) -> dict:
    """Reads the file's C2PA manifest and detects its watermark, like `talkinghead verify`.

    Returns {"ok", "manifest": {"state", "errors"}, "watermark": {"found", "confidence",
    "payload_hex"}, "payload_match", "problems"}; ok is True when everything `expect` asks for
    (default: both) is present and consistent. Never raises for a bad file: problems say why.
    max_frames: read at most this many frames for the watermark (None: all, as `verify` does).
    """
    from ....pipeline.core.errors import InputError
    from ....pipeline.publish.provenance import read_manifest
    from ....pipeline.publish.watermark import detect_file

    expect = expect or {"watermark": True, "content_credentials": True}
    problems = []
    record: dict[str, Any] = {"ok": False}
    try:
        manifest = read_manifest(path, trust_anchor_pem, input_name="output")
        record["manifest"] = {"state": manifest.state, "errors": list(manifest.validation_errors)[:5]}
        manifest_payload = manifest.summary.get("watermark_payload_hex")
    except InputError as exc:
        record["manifest"] = {"state": "Unreadable", "errors": [str(exc)]}
        manifest_payload = None
    try:
        mark = detect_file(path, max_frames=max_frames)
        record["watermark"] = {"found": bool(mark.found), "confidence": round(float(mark.confidence), 2),
                               "payload_hex": mark.payload.hex() if mark.payload else None,
                               "frames_seen": mark.frames_seen}
    except InputError as exc:
        record["watermark"] = {"found": False, "confidence": 0.0, "payload_hex": None, "frames_seen": 0,
                               "error": str(exc)}
    state = record["manifest"]["state"]
    if expect.get("content_credentials") and state not in ("Valid", "Trusted"):
        problems.append(f"content credentials {state}" + (f" ({record['manifest']['errors'][0]})"
                                                          if record["manifest"]["errors"] else ""))
    if expect.get("watermark") and not record["watermark"]["found"]:
        problems.append(f"watermark not found (z = {record['watermark']['confidence']:.1f})")
    if record["watermark"].get("frames_seen", 0) == 0:
        problems.append("no video frames could be decoded")
    found_payload = record["watermark"]["payload_hex"]
    record["payload_match"] = None if not (manifest_payload and found_payload) else manifest_payload == found_payload
    if record["payload_match"] is False:
        problems.append("the watermark payload differs from the one in the content credentials")
    record["problems"] = problems
    record["ok"] = not problems
    return record


# ------------------------------------------------------------------------------------------------
# one job, rendered in this process (local workers and Ray tasks)
# ------------------------------------------------------------------------------------------------

def render_job(payload: dict, *, input_dir: str, staging_dir: str, node_classes: Optional[dict] = None,
               on_node: Optional[Callable[[str, str], None]] = None) -> dict:
    """Runs one job's graph in-process into staging_dir and verifies the MP4.

    payload: {"job_id", "graph", "expect", "trust_anchor_pem", "verify_frames"}. Returns a plain dict (picklable):
    {"status": "ok"|"failed", "staged": path|None, "verify", "timings", "error", "pid"}.
    A node error or a failed verification is a job failure ("failed"), not an exception.
    """
    from ..executor import GraphValidationError, NodeExecutionError, format_validation_errors, run_graph

    started = time.perf_counter()
    outcome: dict[str, Any] = {"status": "failed", "staged": None, "verify": None, "error": None,
                               "pid": os.getpid(), "timings": {}}
    try:
        result = run_graph(payload["graph"], input_dir=input_dir, output_dir=staging_dir, progress=False,
                           node_classes=node_classes, on_node_start=on_node)
    except GraphValidationError as exc:
        outcome["error"] = "the workflow was refused: " + format_validation_errors(exc.error, exc.node_errors,
                                                                                   payload["graph"])
        return outcome
    except NodeExecutionError as exc:
        outcome["error"] = str(exc)
        return outcome
    outcome["timings"]["run_s"] = round(time.perf_counter() - started, 3)
    outcome["timings"]["nodes"] = {node_id: round(seconds, 3) for node_id, seconds in result.timings_s.items()}
    files = mp4_outputs(result.outputs)
    if not files:
        outcome["error"] = "the workflow ran but its Mux wrote no MP4"
        return outcome
    staged = os.path.join(staging_dir, files[0].get("subfolder", ""), files[0]["filename"])
    verify_started = time.perf_counter()
    outcome["verify"] = verify_output(staged, payload.get("expect"), payload.get("trust_anchor_pem"),
                                      payload.get("verify_frames"))
    outcome["timings"]["verify_s"] = round(time.perf_counter() - verify_started, 3)
    if not outcome["verify"]["ok"]:
        outcome["error"] = "the output did not verify: " + "; ".join(outcome["verify"]["problems"])
        return outcome
    outcome["status"] = "ok"
    outcome["staged"] = staged
    return outcome


# ------------------------------------------------------------------------------------------------
# the results manifest (JSONL, appended as jobs finish)
# ------------------------------------------------------------------------------------------------

class Manifest:
    """Append-only JSONL results; the last record of a job id wins when read back."""

    def __init__(self, path: str):
        self.path = path
        self.skipped_lines = 0

    def read(self) -> dict[str, dict]:
        latest: dict[str, dict] = {}
        self.skipped_lines = 0
        if not os.path.isfile(self.path):
            return latest
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    self.skipped_lines += 1  # a line torn by a hard kill: ignored, the job reruns
                    continue
                if isinstance(record, dict) and isinstance(record.get("job_id"), str):
                    latest[record["job_id"]] = record
        return latest

    def append(self, record: dict) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)  # one write per record: a record is whole or (after a hard kill) torn and ignored
            handle.flush()
            os.fsync(handle.fileno())


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def as_dict(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
