"""tests/bench/gpu_diffusion.py (the SD 1.5-sized GPU measurement) kept runnable without a GPU.

The script's whole code path (argument parsing, model build and placement, configurations A-E,
the length sweep, memory accounting, the table and the JSON) runs here on the CPU with
random_models' tiny models at 64x64, one step; the GPU measurement itself needs a CUDA machine
(docs/diffusion_engine.md records where and whether it was run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("cv2")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import gpu_diffusion  # noqa: E402


@pytest.fixture
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_gpu_defaults_are_unchanged():
    args = gpu_diffusion.parse_args([])
    assert (args.device, args.precision, args.size, args.frames, args.steps) == ("auto", None, 512, 48, 8)
    assert args.configs == list("ABCDE") and args.sweep_frames == [16, 48, 96] and args.model_size == "sd15"
    assert gpu_diffusion.parse_args(["--configs", "c,a"]).configs == ["A", "C"]
    assert gpu_diffusion.parse_args(["--configs", "AE"]).configs == ["A", "E"]
    assert gpu_diffusion.parse_args(["--no-sweep"]).sweep_frames == []
    with pytest.raises(SystemExit):
        gpu_diffusion.parse_args(["--configs", "A,F"])


def test_without_cuda_auto_stops_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cpu"):
        gpu_diffusion.pick_device("auto", torch)
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        gpu_diffusion.pick_device("cuda", torch)
    assert gpu_diffusion.pick_device("cpu", torch) == "cpu"


def test_script_runs_end_to_end_on_cpu_with_tiny_models(tmp_path, one_thread, capsys):
    out = tmp_path / "rows.json"
    rows = gpu_diffusion.main(["--device", "cpu", "--model-size", "tiny", "--size", "64", "--frames", "20",
                               "--steps", "1", "--sweep-frames", "8", "--no-warmup", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["rows"] == rows
    setup = saved["setup"]
    assert setup["device"] == "cpu" and setup["precision"] == "fp32" and setup["model_size"] == "tiny"
    assert setup["weights_gib"] > 0 and setup["build_s"] > 0 and setup["peak_rss_build_gib"] >= 0
    by = {r["config"][0]: r for r in rows if r["config"] != "A length sweep"}
    assert sorted(by) == list("ABCDE")
    for r in rows:
        assert r["steps"] == 1 and r["finite"] and r["frames_per_s_per_step"] > 0 and r["peak_mem_gib"] > 0
    # what each configuration is meant to change
    assert by["A"]["windows"] == 2 and by["E"]["windows"] == 1  # 20 frames: windows 16/4 vs 24/6
    assert by["A"]["max_unet_batch"] == 32 and by["D"]["max_unet_batch"] == 16  # guidance: 2 branches vs 1
    assert not by["A"]["controlnet"] and by["B"]["controlnet"] and by["C"]["controlnet"]
    assert by["B"]["reference"] == "off" and by["C"]["reference"] == "aligned_crop encoded"
    sweep = [r for r in rows if r["config"] == "A length sweep"]
    assert [r["frames"] for r in sweep] == [8]
    table = capsys.readouterr().out
    assert "| config | frames |" in table and "peak RSS GiB" in table
