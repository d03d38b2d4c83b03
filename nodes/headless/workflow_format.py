"""The shipped workflows: API format is the source, the editor's UI format is generated from it.

    python -m talkinghead.nodes.headless.workflow_format          # rewrite workflows/*.json
    python -m talkinghead.nodes.headless.workflow_format --check  # exit 1 if any is out of date

Layout (what ComfyUI's template browser needs):
    workflows/api/<stem>.api.json   the source, API format: `talkinghead run`, POST /prompt
    workflows/<Title>.json          the editor's UI format, generated here; one per API file
    workflows/<Title>.jpg           its thumbnail (workflow_thumbnails.py renders them)

ComfyUI (0.3.75 and later) lists every `*.json` at the top of a pack's `example_workflows/`,
`workflows/` (and a few other) folders at GET /api/workflow_templates and serves the folder at
/api/workflow_templates/<pack folder>/; the frontend shows each under the pack's folder name, titled
and described by its file name, with <name>.jpg as thumbnail. So only editor-format files may sit
at the top of workflows/, and their names are the one-line descriptions (TEMPLATE_TITLES).

The UI format (LiteGraph serialisation, version 0.4) needs the widget order of every node, which
comes from the nodes' own INPUT_TYPES, so both formats cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .executor import _input_specs, _is_link, _numeric_first, pack_node_classes

WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows"
API_DIR = WORKFLOWS_DIR / "api"
#: API file stem -> the template's file name in workflows/: the title and one-line description the
#: template browser shows. No "-" or "_" (the browser turns them into spaces in the description),
#: nothing Windows cannot store in a file name (: * ? " < > | / \\).
TEMPLATE_TITLES = {
    "talking_head": "Talking head from a portrait and recorded speech",
    "script_to_video": "Talking head speaking a typed script",
    "reference_encoder": "Portrait check with face landmarks, pose and a quality report",
}
THUMBNAIL_SUFFIX = ".jpg"
COLUMN_WIDTH_PX = 440
NODE_WIDTH_PX = 380
ROW_GAP_PX = 40
SLOT_HEIGHT_PX = 24  # one input, output or widget row
MULTILINE_HEIGHT_PX = 110
#: Room for what an output node shows after running (video or image preview, report box).
PREVIEW_HEIGHT_PX = 520



def _has_seed_control(name: str, expected, options: dict) -> bool:
    """Whether ComfyUI's frontend gives this input a control_after_generate widget."""
    if expected != "INT":
        return False
    if "control_after_generate" in options:
        return bool(options["control_after_generate"])
    return name in ("seed", "noise_seed")

def _node_height_px(specs: dict, node_class: type) -> int:
    rows = len(specs) + len(node_class.RETURN_TYPES)
    multiline = sum(1 for _s, _t, options in specs.values() if options.get("multiline"))
    preview = PREVIEW_HEIGHT_PX if getattr(node_class, "OUTPUT_NODE", False) else 0
    return 40 + rows * SLOT_HEIGHT_PX + multiline * MULTILINE_HEIGHT_PX + preview


def _depths(graph: dict) -> dict[str, int]:
    depths: dict[str, int] = {}

    def depth(node_id: str) -> int:
        if node_id not in depths:
            parents = [str(v[0]) for v in graph[node_id].get("inputs", {}).values() if _is_link(v)]
            depths[node_id] = 1 + max((depth(p) for p in parents), default=-1)
        return depths[node_id]

    for node_id in graph:
        depth(node_id)
    return depths


def api_to_ui(graph: dict, node_classes: Optional[dict] = None) -> dict:
    """Builds the editor (UI) format of an API-format graph. Node ids become LiteGraph ids."""
    node_classes = pack_node_classes() if node_classes is None else node_classes
    ordered = sorted(graph, key=_numeric_first)
    ui_id = {node_id: int(node_id) if node_id.isdigit() else 1000 + i for i, node_id in enumerate(ordered)}
    depths = _depths(graph)
    column_y: dict[int, int] = {}
    links, ui_nodes = [], []
    outputs_links: dict[tuple[str, int], list[int]] = {}

    for node_id in ordered:
        node = graph[node_id]
        for name, value in node.get("inputs", {}).items():
            if _is_link(value):
                link_id = len(links) + 1
                links.append([link_id, ui_id[str(value[0])], value[1], ui_id[node_id], name, None])
                outputs_links.setdefault((str(value[0]), value[1]), []).append(link_id)

    for order, node_id in enumerate(sorted(ordered, key=lambda n: (depths[n], _numeric_first(n)))):
        node = graph[node_id]
        node_class = node_classes[node["class_type"]]
        specs = _input_specs(node_class)
        inputs, widgets_values = [], []
        for name, (_section, expected, options) in specs.items():
            value = node.get("inputs", {}).get(name)
            is_widget = isinstance(expected, list) or expected in ("INT", "FLOAT", "STRING", "BOOLEAN")
            if _is_link(value):
                link_id = next(link[0] for link in links if link[3] == ui_id[node_id] and link[4] == name)
                slot_type = "COMBO" if isinstance(expected, list) else expected
                entry = {"name": name, "type": slot_type, "link": link_id}
                if is_widget:
                    entry["widget"] = {"name": name}
                inputs.append(entry)
                if is_widget:
                    widgets_values.append(options.get("default"))
            elif is_widget:
                widgets_values.append(value if name in node.get("inputs", {}) else options.get("default"))
            else:
                inputs.append({"name": name, "type": expected, "link": None})
            if is_widget and _has_seed_control(name, expected, options):
                # The frontend adds a "control after generate" widget right after a seed and loads
                # widgets_values in widget order: "fixed" keeps the workflow's seed on every run.
                widgets_values.append("fixed")
        names = getattr(node_class, "RETURN_NAMES", node_class.RETURN_TYPES)
        outputs = [
            {"name": names[i], "type": output_type, "links": outputs_links.get((node_id, i), []), "slot_index": i}
            for i, output_type in enumerate(node_class.RETURN_TYPES)
        ]
        column = depths[node_id]
        y = column_y.get(column, 50)
        height = _node_height_px(specs, node_class)
        column_y[column] = y + height + ROW_GAP_PX
        ui_node = {
            "id": ui_id[node_id],
            "type": node["class_type"],
            "pos": [50 + column * COLUMN_WIDTH_PX, y],
            "size": [NODE_WIDTH_PX, height],
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": inputs,
            "outputs": outputs,
            "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": widgets_values,
        }
        title = node.get("_meta", {}).get("title")
        if title:
            ui_node["title"] = title
        ui_nodes.append(ui_node)

    # LiteGraph links: [id, origin_id, origin_slot, target_id, target_slot_index, type]
    by_id = {n["id"]: n for n in ui_nodes}
    for link in links:
        target = by_id[link[3]]
        link[4] = next(i for i, entry in enumerate(target["inputs"]) if entry["name"] == link[4])
        source = by_id[link[1]]
        link[5] = source["outputs"][link[2]]["type"]
    return {
        "last_node_id": max(by_id),
        "last_link_id": len(links),
        "nodes": sorted(ui_nodes, key=lambda n: n["id"]),
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}},
        "version": 0.4,
    }


def api_stem(api_path: Path) -> str:
    return api_path.name[:-len(".api.json")]


def ui_path_for(api_path: Path) -> Path:
    """The editor-format template generated from an API workflow (workflows/<Title>.json)."""
    stem = api_stem(api_path)
    if stem not in TEMPLATE_TITLES:
        raise KeyError(f"{api_path.name}: add its template title to TEMPLATE_TITLES in {__file__}")
    return WORKFLOWS_DIR / (TEMPLATE_TITLES[stem] + ".json")


def thumbnail_path_for(api_path: Path) -> Path:
    return ui_path_for(api_path).with_suffix(THUMBNAIL_SUFFIX)


def api_path_for(ui_path: Path) -> Path:
    """The API source of a template in workflows/."""
    by_title = {title: stem for stem, title in TEMPLATE_TITLES.items()}
    return API_DIR / (by_title[ui_path.stem] + ".api.json")


def api_workflows() -> list[Path]:
    return sorted(API_DIR.glob("*.api.json"))


def templates() -> list[Path]:
    """The editor-format workflows at the top of workflows/ (what the template browser lists)."""
    return sorted(WORKFLOWS_DIR.glob("*.json"))


def render(api_path: Path) -> str:
    graph = json.loads(api_path.read_text(encoding="utf-8"))
    return json.dumps(api_to_ui(graph), indent=2) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report UI files that are out of date")
    args = parser.parse_args(argv)
    stale, wanted = [], set()
    for api_path in api_workflows():
        ui_path = ui_path_for(api_path)
        wanted.add(ui_path.name)
        text = render(api_path)
        if ui_path.exists() and ui_path.read_text(encoding="utf-8") == text:
            continue
        stale.append(ui_path.name)
        if not args.check:
            ui_path.write_text(text, encoding="utf-8")
            print(f"wrote {ui_path}")
    # Anything else at the top of workflows/ would show up in the template browser.
    for extra in sorted(p for p in templates() if p.name not in wanted):
        stale.append(f"{extra.name} (no API source in {API_DIR.name}/)")
        if not args.check:
            extra.unlink()
            print(f"removed {extra}")
    missing = [ui_path_for(p).with_suffix(THUMBNAIL_SUFFIX).name for p in api_workflows()
               if not thumbnail_path_for(p).exists()]
    if missing:
        print("no thumbnail yet (python -m talkinghead.nodes.headless.workflow_thumbnails): "
              + ", ".join(missing), file=sys.stderr)
    if args.check and (stale or missing):
        print("out of date: " + ", ".join(stale + missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
