"""The ReferenceEncoder node in the pack's in-process executor: consent, saved files, VAE from models/vae."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mediapipe")

from talkinghead.nodes import comfy_env  # noqa: E402
from talkinghead.nodes.headless.executor import NodeExecutionError, run_graph  # noqa: E402
from talkinghead.pipeline.core.errors import InputError  # noqa: E402
from talkinghead.pipeline.face.reference import Reference  # noqa: E402

WORKFLOW = Path(__file__).resolve().parents[3] / "workflows" / "api" / "reference_encoder.api.json"


@pytest.fixture
def folders(tmp_path):
    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    input_dir.mkdir()
    output_dir.mkdir()
    return str(input_dir), str(output_dir)


def files_under(folder: str) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def test_shipped_workflow_refuses_without_consent_and_writes_nothing(folders):
    input_dir, output_dir = folders
    graph = json.loads(WORKFLOW.read_text())
    assert graph["2"]["inputs"]["consent"] is False  # the user must attest, not the workflow file
    with pytest.raises(NodeExecutionError) as caught:
        run_graph(graph, input_dir=input_dir, output_dir=output_dir, progress=False)
    assert "consent" in str(caught.value)
    assert files_under(output_dir) == []


def test_with_consent_the_reference_is_saved_and_reported(folders):
    input_dir, output_dir = folders
    graph = json.loads(WORKFLOW.read_text())
    graph["2"]["inputs"]["consent"] = True
    result = run_graph(graph, input_dir=input_dir, output_dir=output_dir, progress=False)
    ui = result.outputs["2"]
    assert "Reference quality: OK" in ui["text"][0]
    assert ui["talkinghead_reference"][0]["face_count"] == 1
    saved = files_under(output_dir)
    assert saved == ["TalkingHead/reference_00001_.json", "TalkingHead/reference_00001_.safetensors"]
    loaded = Reference.load(os.path.join(output_dir, saved[0]))
    assert loaded.consent.attested and loaded.aligned_crop.shape == (512, 512, 3)
    reference, preview, aligned, report = result.results["2"]
    assert tuple(preview.shape[-1:]) == (3,) and tuple(aligned.shape) == (1, 512, 512, 3)
    assert np.array_equal(np.asarray(aligned[0] * 255 + 0.5, np.uint8), reference.aligned_crop)
    assert report.startswith("Reference:")


def test_vae_from_the_models_folder(folders, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    torch.set_num_threads(1)
    models = tmp_path / "models"
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                                  layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=64)
    vae.save_pretrained(str(models / "vae" / "tiny-vae"), safe_serialization=True)
    monkeypatch.setenv(comfy_env.MODELS_DIR_ENV, str(models))
    input_dir, output_dir = folders
    with comfy_env.headless(comfy_env.HeadlessContext(input_dir, output_dir)):
        assert comfy_env.list_models("vae") == ["tiny-vae"]
        with pytest.raises(InputError) as caught:
            comfy_env.resolve_model("vae", "../../etc", "vae_name")
        assert caught.value.input_name == "vae_name" and "outside" in str(caught.value)
    graph = json.loads(WORKFLOW.read_text())
    graph["2"]["inputs"].update(consent=True, vae_name="tiny-vae", crop_size=128, save_reference=False)
    result = run_graph(graph, input_dir=input_dir, output_dir=output_dir, progress=False)
    reference = result.results["2"][0]
    assert reference.latents.face_latents.shape == (4, 64, 64)
    assert "Latents: face (4, 64, 64)" in result.outputs["2"]["text"][0]
    assert files_under(output_dir) == []
