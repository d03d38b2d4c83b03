"""The pack in the editor: every input explains itself, nodes sit under one menu, names are the stages.

ComfyUI shows an input's `tooltip` when the pointer rests on it; a node's DESCRIPTION in the node
library. These checks run on the node classes as registered, exactly what /object_info serves.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from talkinghead.nodes.registry import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

MIN_TOOLTIP, MAX_TOOLTIP = 40, 400  # characters: more than a label, less than a manual page
MENU = "TalkingHead"
#: Pipeline stages (DESIGN.md) and the display name each must carry.
STAGES = {
    "TalkingHeadVisemeAligner": "Viseme Aligner",
    "TalkingHeadReferenceEncoder": "Reference Encoder",
    "TalkingHeadTemporalSampler": "Temporal Sampler",
    "TalkingHeadWatermark": "Watermark",
    "TalkingHeadMux": "Mux",
    "TalkingHeadSpeak": "Speak",
    "TalkingHeadArtifactReport": "Artifact Report",
    "TalkingHeadWatermarkDetect": "Detect Watermark",
    "TalkingHeadPromptRefiner": "Prompt Refiner",
}


def _inputs():
    for node_type, node_class in sorted(NODE_CLASS_MAPPINGS.items()):
        for section, entries in node_class.INPUT_TYPES().items():
            if section == "hidden":
                continue
            for name, entry in entries.items():
                yield node_type, name, entry


INPUTS = list(_inputs())


@pytest.mark.parametrize("node_type,name,entry", INPUTS, ids=[f"{n}.{i}" for n, i, _ in INPUTS])
def test_every_input_has_a_tooltip(node_type, name, entry):
    options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
    tooltip = (options.get("tooltip") or "").strip()
    assert tooltip, f"{node_type}.{name} has no tooltip"
    assert MIN_TOOLTIP <= len(tooltip) <= MAX_TOOLTIP, (
        f"{node_type}.{name}: tooltip of {len(tooltip)} characters (want {MIN_TOOLTIP}-{MAX_TOOLTIP}): {tooltip!r}")
    if entry[0] in ("INT", "FLOAT"):
        # numbers say their range and default (the registry appends them when a tooltip does not)
        assert "default" in tooltip.lower() and ("range" in tooltip.lower() or "min" not in options), (
            f"{node_type}.{name}: a number's tooltip names its range and default: {tooltip!r}")


@pytest.mark.parametrize("node_type", sorted(NODE_CLASS_MAPPINGS))
def test_node_is_described_and_under_the_pack_menu(node_type):
    node_class = NODE_CLASS_MAPPINGS[node_type]
    assert node_type.startswith(MENU)
    assert node_class.CATEGORY.split("/")[0] == MENU, f"{node_type} is in menu {node_class.CATEGORY!r}"
    assert len(getattr(node_class, "DESCRIPTION", "") or "") >= MIN_TOOLTIP, f"{node_type} has no DESCRIPTION"
    tips = getattr(node_class, "OUTPUT_TOOLTIPS", ())
    assert len(tips) == len(node_class.RETURN_TYPES) and all(tips), f"{node_type}: every output needs a tooltip"
    display = NODE_DISPLAY_NAME_MAPPINGS.get(node_type, "")
    assert display.endswith("(Talking Head)"), f"{node_type}: display name {display!r} does not name the pack"
    if node_type in STAGES:
        assert display.startswith(STAGES[node_type]), f"{node_type}: display name {display!r} is not its stage name"
