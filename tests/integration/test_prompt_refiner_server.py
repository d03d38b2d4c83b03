"""The PromptRefiner node in a real, unmodified ComfyUI 0.3.75 server, through /prompt.

Its positive output feeds core `PreviewAny` (STRING interop); its report reaches the client as the
node's ui text; a prompt the content policy refuses reaches the client as execution_error with our
message.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def refiner_graph(prompt: str, **inputs) -> dict:
    node = {"prompt": prompt, "negative": "", "preset": "studio", "token_budget": 77, "infer_detail": True}
    node.update(inputs)
    return {
        "1": {"class_type": "TalkingHeadPromptRefiner", "inputs": node},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}},
    }


def test_refiner_runs_through_prompt_api(comfy_server):
    info = comfy_server.object_info()["TalkingHeadPromptRefiner"]
    assert info["display_name"] == "Prompt Refiner (Talking Head)"
    assert info["output"] == ["TH_REFINED_PROMPT", "STRING", "STRING", "STRING"]
    assert "studio" in info["input"]["required"]["preset"][0]

    run = comfy_server.run_prompt(refiner_graph("A grinning woman, red hair, blonde hair, no glasses"), timeout=120)
    assert run.status == "success", run.error
    report = run.outputs["1"]["text"][0]
    assert report.startswith("Positive prompt: ")
    assert "removed 'red hair': contradicts 'blonde hair' (hair color)" in report
    summary = run.outputs["1"]["talkinghead_prompt"][0]
    assert summary["fits"] is True and summary["negative"].startswith("glasses, harsh shadows")
    shown = "".join(run.outputs["2"]["text"])
    assert shown == summary["positive"]
    assert shown.startswith("a smiling woman, blonde hair, head and shoulders portrait")


def test_refused_prompt_reaches_client_as_execution_error(comfy_server):
    run = comfy_server.run_prompt(refiner_graph("a nude woman"), timeout=120)
    assert run.status == "error"
    err = run.error
    assert err["node_type"] == "TalkingHeadPromptRefiner"
    assert err["exception_message"].startswith("prompt: refused by the content policy: sexual content")
