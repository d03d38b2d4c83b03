"""Batch throughput: jobs per minute against local workers (1, 2) and Ray, with where each job's time goes.

Each configuration renders the same N short jobs (one sentence spoken by Speak, 256x256, the shipped
script_to_video workflow, one presenter portrait) into a fresh folder with `run_batch`, and reports:
wall time, time to the first finished job (worker start-up: imports, face models), the steady-state
rate (jobs/min between the first and the last finished job), and the mean seconds per node and per
verification from the manifest. Ratios are against 1 local worker measured in the same run.

Run: python tests/bench/bench_batch.py [--jobs N] [--workers 1,2] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batch_helpers import manifest_records, write_jobs  # noqa: E402

from talkinghead.nodes.headless.batch.command import BatchOptions, run_batch  # noqa: E402
from talkinghead.nodes.headless.batch.jobs import shipped_workflow  # noqa: E402

WORKFLOW = shipped_workflow("script_to_video")


def node_titles() -> dict:
    import json

    graph = json.loads(WORKFLOW.read_text())
    return {node_id: node.get("_meta", {}).get("title") or node["class_type"] for node_id, node in graph.items()}


def run_config(label: str, jobs_path: Path, root: Path, executor=None, workers: int = 1) -> dict:
    out = root / label.replace(" ", "_")
    finished_at = []
    started = time.monotonic()

    def on_event(kind, data):
        if kind == "finished":
            finished_at.append(time.monotonic() - started)

    options = BatchOptions(jobs_path=str(jobs_path), workflow=str(WORKFLOW), out_dir=str(out), workers=workers,
                           progress=False)
    summary = run_batch(options, executor=executor, on_event=on_event)
    wall = time.monotonic() - started
    records = [r for r in manifest_records(out) if r["status"] == "ok"]
    steady = None
    if len(finished_at) >= 3:
        steady = 60.0 * (len(finished_at) - 1) / (finished_at[-1] - finished_at[0])
    nodes: dict[str, list] = {}
    for record in records:
        for node_id, seconds in (record["timings"].get("nodes") or {}).items():
            nodes.setdefault(node_id, []).append(seconds)
        nodes.setdefault("verify", []).append(record["timings"].get("verify_s", 0.0))
    return {"label": label, "ok": summary.ok, "failed": summary.failed + summary.lost, "wall": wall,
            "first": finished_at[0] if finished_at else float("nan"), "rate": 60.0 * summary.ok / wall,
            "steady": steady, "nodes": {k: statistics.median(v) for k, v in nodes.items()},
            "mb_per_clip": statistics.mean((out / r["output"]).stat().st_size for r in records) / 1e6 if records else 0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TALKINGHEAD_CONFIG_DIR", tempfile.mkdtemp(prefix="talkinghead-bench-config-"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as temp:
        root = Path(temp)
        jobs_path = write_jobs(root / "jobs", args.jobs)
        for workers in [int(w) for w in args.workers.split(",")]:
            results.append(run_config(f"local {workers} worker{'s' if workers > 1 else ''}", jobs_path, root,
                                      workers=workers))
        if not args.no_ray:
            from talkinghead.nodes.headless.batch.ray_executor import RayExecutor, ray_or_reason

            ray, reason = ray_or_reason()
            if ray is None:
                print(f"ray: skipped ({reason})")
            else:
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                results.append(run_config("ray 2 CPUs", jobs_path, root,
                                          executor=RayExecutor(address="local", local_cpus=2)))
    base = results[0]
    print(f"{args.jobs} jobs per configuration (one sentence each, 256x256, ~2 s clips); "
          f"1-min load average at start {load:.1f} on {os.cpu_count()} cores\n")
    print(f"{'configuration':<16} {'ok':>3} {'wall s':>7} {'first s':>8} {'jobs/min':>9} {'steady/min':>11} {'x base':>7}")
    for r in results:
        steady = f"{r['steady']:.1f}" if r["steady"] else "-"
        print(f"{r['label']:<16} {r['ok']:>3} {r['wall']:>7.1f} {r['first']:>8.1f} {r['rate']:>9.1f} {steady:>11} "
              f"{r['rate'] / base['rate']:>7.2f}")
    titles = node_titles()
    print("\nmedian seconds per job, by stage (from the manifest timings):")
    keys = sorted({k for r in results for k in r["nodes"]}, key=lambda k: (k == "verify", k))
    print(f"{'stage':<22}" + "".join(f"{r['label']:>18}" for r in results))
    for key in keys:
        name = "verify (C2PA + mark)" if key == "verify" else f"#{key} {titles.get(key, '?')}"
        print(f"{name:<22}" + "".join(f"{r['nodes'].get(key, float('nan')):>18.2f}" for r in results))
    print(f"\nmean MP4 size: {base['mb_per_clip']:.3f} MB per clip")


if __name__ == "__main__":
    main()
