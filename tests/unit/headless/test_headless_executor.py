"""The in-process executor runs shipped workflows and refuses bad graphs the way ComfyUI does."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from talkinghead.nodes.headless.executor import (  # noqa: E402
                                                 GraphValidationError,
                                                 NodeExecutionError,
                                                 run_graph,
                                                 validate_graph,
                                                 )
from talkinghead.nodes.headless import workflow_format  # noqa: E402
from talkinghead.pipeline.publish.mux import measure_av_sync  # noqa: E402

WORKFLOWS = Path(__file__).resolve().parents[3] / "workflows" / "api"


def load(name: str) -> dict:
    """A shipped workflow as a user runs it after attesting consent on its Reference Encoder (the
    files leave consent unset on purpose; test_reference_node checks the refusal)."""
    graph = json.loads((WORKFLOWS / name).read_text())
    for node in graph.values():
        if node["class_type"] == "TalkingHeadReferenceEncoder":
            node["inputs"]["consent"] = True
    return graph


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "input").mkdir()
    (tmp_path / "output").mkdir()
    return str(tmp_path / "input"), str(tmp_path / "output")


def mp4_files(folder: str) -> list[str]:
    return sorted(str(p) for p in Path(folder).rglob("*.mp4"))


MUX_WORKFLOWS = sorted(p.name for p in WORKFLOWS.glob("*.api.json") if "TalkingHeadMux" in p.read_text())


def test_mux_workflows_are_found():
    assert {"talking_head.api.json", "script_to_video.api.json"} <= set(MUX_WORKFLOWS)


@pytest.mark.parametrize("workflow", MUX_WORKFLOWS)
def test_every_shipped_video_workflow_runs_in_process_to_a_synced_mp4(workflow, folders):
    input_dir, output_dir = folders
    result = run_graph(load(workflow), input_dir=input_dir, output_dir=output_dir, progress=False)
    (mux_id, ui), = [(k, v) for k, v in result.outputs.items() if "talkinghead_mux" in v]
    report = ui["talkinghead_mux"][0]
    preview = ui["images"][0]
    path = os.path.join(output_dir, preview["subfolder"], preview["filename"])
    assert os.path.isfile(path) and preview["type"] == "output" and ui["animated"] == [True]
    assert result.results[mux_id][0] == path
    sync = measure_av_sync(path)
    assert abs(sync.av_offset_ms) <= 5.0
    assert abs(sync.duration_diff_ms) <= 1000.0 / report["fps"]
    assert report["duration_s"] > 2.0  # a sentence of speech, held portrait for all of it


def test_the_same_graph_twice_gives_identical_frames_and_a_new_counter(folders):
    input_dir, output_dir = folders
    # the same speech file both times (espeak-ng's output depends on what the process said before)
    from talkinghead.pipeline.core.audio_io import load_audio  # noqa: F401  (the loader reads it back)
    from talkinghead.pipeline.speech.speak import speak_to_wav

    speak_to_wav("Bob made a big map of the moon.", os.path.join(input_dir, "speech.wav"))
    graph = load("talking_head.api.json")
    graph["2"]["inputs"]["audio"] = "speech.wav"
    graph["4"]["inputs"]["transcript"] = "Bob made a big map of the moon."
    first = run_graph(graph, input_dir=input_dir, output_dir=output_dir, progress=False).outputs["3"]
    second = run_graph(graph, input_dir=input_dir, output_dir=output_dir, progress=False).outputs["3"]
    assert first["talkinghead_mux"][0]["frames_sha256"] == second["talkinghead_mux"][0]["frames_sha256"]
    assert first["images"][0]["filename"] != second["images"][0]["filename"]
    assert len(mp4_files(output_dir)) == 2


def test_user_files_in_the_input_folder_are_loaded(folders):
    from PIL import Image

    input_dir, output_dir = folders
    from skimage import data

    portrait = np.asarray(Image.fromarray(data.astronaut()).resize((384, 448)))  # 384 wide, 448 high
    Image.fromarray(portrait).save(os.path.join(input_dir, "me.png"))
    graph = load("script_to_video.api.json")
    graph["1"]["inputs"]["image"] = "me.png"
    graph["2"]["inputs"]["text"] = "Short."
    result = run_graph(graph, input_dir=input_dir, output_dir=output_dir, progress=False)
    report = result.outputs["3"]["talkinghead_mux"][0]
    assert (report["width"], report["height"]) == (384, 448)


def errors_of(graph) -> dict:
    with pytest.raises(GraphValidationError) as caught:
        validate_graph(graph)
    return caught.value


def test_validation_errors_are_shaped_like_comfyui(folders):
    from talkinghead.nodes import comfy_env

    input_dir, output_dir = folders
    base = load("script_to_video.api.json")
    with comfy_env.headless(comfy_env.HeadlessContext(input_dir, output_dir)):
        missing = copy.deepcopy(base)
        del missing["3"]["inputs"]["audio"]
        error = errors_of(missing)
        assert error.error["type"] == "prompt_outputs_failed_validation"
        assert [e["type"] for e in error.node_errors["3"]["errors"]] == ["required_input_missing"]
        assert error.node_errors["3"]["errors"][0]["extra_info"]["input_name"] == "audio"

        mismatch = copy.deepcopy(base)
        mismatch["3"]["inputs"]["audio"] = ["2", 1]  # speech timings, not AUDIO
        problem = errors_of(mismatch).node_errors["3"]["errors"][0]
        assert problem["type"] == "return_type_mismatch"
        assert "TH_SPEECH_TIMINGS" in problem["details"] and "AUDIO" in problem["details"]

        too_big = copy.deepcopy(base)
        too_big["2"]["inputs"]["rate_wpm"] = 9000
        assert errors_of(too_big).node_errors["2"]["errors"][0]["type"] == "value_bigger_than_max"

        too_small = copy.deepcopy(base)
        too_small["3"]["inputs"]["fps"] = 0
        assert errors_of(too_small).node_errors["3"]["errors"][0]["type"] == "value_smaller_than_min"

        bad_choice = copy.deepcopy(base)
        bad_choice["3"]["inputs"]["duration_policy"] = "stretch"
        assert errors_of(bad_choice).node_errors["3"]["errors"][0]["type"] == "value_not_in_list"

        not_a_number = copy.deepcopy(base)
        not_a_number["3"]["inputs"]["crf"] = "high"
        assert errors_of(not_a_number).node_errors["3"]["errors"][0]["type"] == "invalid_input_type"


def test_nodes_of_other_packs_are_named_as_not_available():
    graph = load("talking_head.api.json")
    graph["1"] = {"class_type": "LoadImage", "inputs": {"image": "me.png"}}
    graph["9"] = {"class_type": "VHS_VideoCombine", "inputs": {}}
    error = errors_of(graph)
    assert error.error["type"] == "missing_node_type"
    assert "LoadImage (node #1)" in str(error) and "VHS_VideoCombine (node #9)" in str(error)


def test_a_failing_node_reports_its_input_and_leaves_no_file(folders):
    input_dir, output_dir = folders
    graph = load("script_to_video.api.json")
    graph["3"]["inputs"]["filename_prefix"] = "../../outside"
    with pytest.raises(NodeExecutionError) as caught:
        run_graph(graph, input_dir=input_dir, output_dir=output_dir, progress=False)
    assert caught.value.node_id == "3" and "filename_prefix" in caught.value.exception_message
    assert mp4_files(output_dir) == [] and mp4_files(os.path.dirname(output_dir)) == []

    graph = load("script_to_video.api.json")
    graph["2"]["inputs"]["text"] = "   "
    with pytest.raises(NodeExecutionError) as caught:
        run_graph(graph, input_dir=input_dir, output_dir=output_dir, progress=False)
    assert caught.value.node_id == "2" and "text" in caught.value.exception_message


def test_loader_refuses_paths_outside_the_input_folder(folders, tmp_path):
    input_dir, output_dir = folders
    graph = load("talking_head.api.json")
    graph["2"]["inputs"]["audio"] = "../secret.wav"
    # Not in the combo list, so validation refuses it before any file is touched.
    with pytest.raises(GraphValidationError) as caught:
        run_graph(graph, input_dir=input_dir, output_dir=output_dir, progress=False)
    assert caught.value.node_errors["2"]["errors"][0]["type"] == "value_not_in_list"


def test_ui_workflows_are_generated_from_the_api_workflows():
    assert workflow_format.main(["--check"]) == 0
    for api_path in WORKFLOWS.glob("*.api.json"):
        ui = json.loads(workflow_format.ui_path_for(api_path).read_text())
        api = json.loads(api_path.read_text())
        assert sorted(str(n["id"]) for n in ui["nodes"]) == sorted(api)
        assert {n["type"] for n in ui["nodes"]} == {n["class_type"] for n in api.values()}
    # the top of workflows/ is what ComfyUI's template browser lists: templates and thumbnails only
    top = sorted(p.name for p in WORKFLOWS.parent.iterdir() if p.is_file())
    expected = sorted(name for api_path in WORKFLOWS.glob("*.api.json")
                      for name in (workflow_format.ui_path_for(api_path).name,
                                   workflow_format.thumbnail_path_for(api_path).name))
    assert top == expected


def test_every_template_has_a_real_thumbnail():
    from PIL import Image

    for api_path in WORKFLOWS.glob("*.api.json"):
        thumb = workflow_format.thumbnail_path_for(api_path)
        assert thumb.exists(), f"{thumb.name}: run python -m talkinghead.nodes.headless.workflow_thumbnails"
        with Image.open(thumb) as image:
            assert image.format == "JPEG" and image.width >= 256 and image.height >= 256
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
        assert pixels.std() > 20, f"{thumb.name} looks blank"


def test_viseme_aligner_exports_track_and_rhubarb_json(folders):
    from talkinghead.pipeline.lipsync.track import VisemeTrack

    input_dir, output_dir = folders
    graph = load("script_to_video.api.json")
    graph["4"]["inputs"]["export"] = "both"
    result = run_graph(graph, input_dir=input_dir, output_dir=output_dir, progress=False)
    ui = result.outputs["4"]
    assert ui["talkinghead_visemes"][0]["method"] == "speech_timings"
    saved = {info["filename"]: Path(output_dir, info["subfolder"], info["filename"]) for info in ui["files"]}
    (track_file,) = [p for name, p in saved.items() if "_rhubarb" not in name]
    (rhubarb_file,) = [p for name, p in saved.items() if "_rhubarb" in name]
    track = VisemeTrack.from_json(track_file.read_text())
    assert track.num_frames == result.outputs["3"]["talkinghead_mux"][0]["frame_count"]
    assert json.loads(rhubarb_file.read_text())["mouthCues"][0]["start"] == 0
    # The node's outputs: the track object, the timeline IMAGE, the Rhubarb JSON text, the words used.
    track_out, timeline, rhubarb_text, transcript = result.results["4"]
    (spoken,) = [node["inputs"]["text"] for node in graph.values() if node["class_type"] == "TalkingHeadSpeak"]
    assert transcript.split()[:3] == [w.strip("!.,") for w in spoken.split()[:3]]   # Speak's own words
    assert track_out.num_frames == track.num_frames
    assert tuple(timeline.shape) == (1, 360, 1280, 3)
    assert json.loads(rhubarb_text) == json.loads(rhubarb_file.read_text())
