"""The pack feels native in the real ComfyUI frontend: templates, panels on the nodes, degradation.

- The shipped workflows are in the template browser (the dialog the frontend opens, fed by
  GET /api/workflow_templates and /api/workflow_templates/<pack>/<name>.json|.jpg), each with its
  thumbnail, and each loads from there with no missing node.
- After a run, the panels of web/talkinghead.js show real data: the Viseme Aligner's timeline (one
  label per word, playable, cursor follows the audio), the Reference Encoder's quality badges, the
  Mux figures next to ComfyUI's own player, the watermark payload and detection confidence.
- Without a piece of the extension API the nodes still run and the console says what is missing.

Screenshots land in tests/artifacts/ (browser-editor-*.png).
"""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest

from comfy_server import PACK_FOLDER
from talkinghead.nodes.headless import workflow_format
from test_frontend import CONSENT_JS, LOAD_JS, browser, frontend  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

EXTENSION_JS = f"/extensions/{PACK_FOLDER}/talkinghead.js"
TEMPLATES = {p.stem: p for p in workflow_format.templates()}
TALKING_HEAD = workflow_format.TEMPLATE_TITLES["talking_head"]
RUN_TIMEOUT_S = 540

# The same requests the template browser makes (useTemplateWorkflows / workflowTemplatesStore).
FETCH_TEMPLATE_JS = """
async ([module, name]) => {
  const api = window.comfyAPI.api.api;
  const list = await (await fetch(api.apiURL('/workflow_templates'))).json();
  const res = await fetch(api.apiURL(`/workflow_templates/${module}/${name}.json`));
  return {list, status: res.status, workflow: res.ok ? await res.json() : null};
}
"""

QUEUE_JS = "async () => { await window.app.queuePrompt(0, 1); }"


def queue_and_wait(frontend, comfy_server) -> dict:
    """Queues the page's graph as the Queue button does; returns the /history entry."""
    with frontend.page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST",
                                       timeout=60_000) as info:
        frontend.page.evaluate(QUEUE_JS)
    body = info.value.json()
    assert info.value.status == 200 and "prompt_id" in body, body
    entry = comfy_server.wait_history(body["prompt_id"], timeout=RUN_TIMEOUT_S)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    return entry


def node_ui(entry: dict, key: str, **match) -> dict:
    found = [ui[key][0] for ui in entry["outputs"].values()
             if ui.get(key) and all(ui[key][0].get(k) == v for k, v in match.items())]
    assert found, f"no node output carries {key}: {list(entry['outputs'].values())}"
    return found[0]


def show_node(frontend, node_type: str) -> None:
    """Centres the canvas on the first node of `node_type`, so its panel is on screen."""
    frontend.page.evaluate("""(type) => {
      const node = window.app.graph._nodes.find(n => n.type === type);
      window.app.canvas.centerOnNode?.(node);
      window.app.graph.setDirtyCanvas(true, true);
    }""", node_type)
    frontend.page.wait_for_timeout(400)


def panel_shot(frontend, artifacts_dir, node_type: str, name: str) -> None:
    show_node(frontend, node_type)
    panel = frontend.page.locator(f".th-panel.th-{name}").last
    try:
        panel.screenshot(path=str(artifacts_dir / f"browser-editor-panel-{name}.png"), timeout=5_000)
    except Exception:  # off screen or hidden: the page shot still shows the graph
        pass
    frontend.page.screenshot(path=str(artifacts_dir / f"browser-editor-node-{name}.png"))


# -- templates -----------------------------------------------------------------------------------

def test_template_browser_shows_every_template_with_thumbnail(frontend, artifacts_dir):
    frontend.open()
    listed = frontend.page.evaluate(FETCH_TEMPLATE_JS, [PACK_FOLDER, TALKING_HEAD])["list"]
    assert sorted(listed.get(PACK_FOLDER, [])) == sorted(TEMPLATES), listed.get(PACK_FOLDER)
    # Open the template browser as the menu does and pick the pack's section.
    frontend.page.evaluate("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    frontend.page.get_by_text(PACK_FOLDER, exact=True).first.click(timeout=30_000)
    for name in TEMPLATES:
        card = frontend.page.locator(f'[data-testid="template-workflow-{name}"]')
        card.wait_for(state="visible", timeout=30_000)
        assert name in card.inner_text()  # title and one-line description: the file name
    frontend.page.wait_for_function(
        "(names) => names.every(n => [...document.querySelectorAll(`[data-testid=\"template-workflow-${n}\"] img`)]"
        ".some(img => img.complete && img.naturalWidth >= 256))", arg=list(TEMPLATES), timeout=30_000)
    frontend.page.screenshot(path=str(artifacts_dir / "browser-editor-template-browser.png"))
    # Click one: the browser fetches it and loads it into the canvas.
    frontend.page.locator(f'[data-testid="template-workflow-{TALKING_HEAD}"]').click()
    frontend.page.wait_for_function(
        "() => (window.app.graph._nodes || []).some(n => n.type === 'TalkingHeadMux')", timeout=30_000)
    assert not frontend.our_errors(), "\n".join(frontend.our_errors())


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_loads_from_the_template_route_without_missing_nodes(name, frontend):
    frontend.open()
    fetched = frontend.page.evaluate(FETCH_TEMPLATE_JS, [PACK_FOLDER, name])
    assert fetched["status"] == 200 and fetched["workflow"], fetched["status"]
    res = frontend.page.evaluate(LOAD_JS, [fetched["workflow"], name])
    assert not res["unregistered"], f"{name}: missing node types {res['unregistered']}"
    assert sorted(res["loaded"]) == sorted(res["wanted"]), res
    assert not res["withErrors"], res
    assert "missing" not in frontend.dialogs_text().lower()
    # it runs as it is, apart from the consent a user gives: the prompt validates on the server
    frontend.page.evaluate(CONSENT_JS)
    prompt = frontend.page.evaluate("async () => (await window.app.graphToPrompt()).output")
    assert {n["class_type"] for n in prompt.values()} == set(res["wanted"])
    assert not frontend.our_errors(), "\n".join(frontend.our_errors())


# -- panels after a run --------------------------------------------------------------------------

TIMELINE_JS = """
() => {
  const root = document.querySelector('.th-panel.th-timeline');
  if (!root) return null;
  const audio = root.querySelector('audio');
  const canvas = root.querySelector('canvas');
  let painted = 0;
  if (canvas) {
    const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < px.length; i += 4 * 7) painted += px[i] > 0 ? 1 : 0;
  }
  return {
    words: [...root.querySelectorAll('.th-word')].map(w => w.textContent),
    phones: root.querySelectorAll('.th-phone').length,
    painted,
    audioSrc: audio?.currentSrc || audio?.src || '',
    readyState: audio?.readyState ?? -1,
    duration: audio?.duration ?? 0,
    cursor: parseFloat(root.querySelector('.th-cursor')?.style.left || '0'),
    time: audio?.currentTime ?? 0,
  };
}
"""


def test_panels_show_real_data_after_a_run(frontend, comfy_server, artifacts_dir):
    frontend.open()
    fetched = frontend.page.evaluate(FETCH_TEMPLATE_JS, [PACK_FOLDER, TALKING_HEAD])
    frontend.page.evaluate(LOAD_JS, [fetched["workflow"], TALKING_HEAD])
    assert frontend.page.evaluate(CONSENT_JS) >= 1
    t0 = time.monotonic()
    entry = queue_and_wait(frontend, comfy_server)
    print(f"\n[editor] {TALKING_HEAD} ran in {time.monotonic() - t0:.1f} s")

    # Viseme Aligner: one label per word, the strip and curve drawn, the audio playable via /view.
    timeline = node_ui(entry, "talkinghead_timeline")
    assert timeline["audio"]["type"] == "temp" and timeline["words"], timeline["audio"]
    frontend.page.wait_for_function(
        "(n) => document.querySelectorAll('.th-panel.th-timeline .th-word').length === n",
        arg=len(timeline["words"]), timeout=30_000)
    show_node(frontend, "TalkingHeadVisemeAligner")
    frontend.page.wait_for_function(
        "() => (document.querySelector('.th-panel.th-timeline audio')?.readyState ?? 0) >= 2", timeout=30_000)
    state = frontend.page.evaluate(TIMELINE_JS)
    assert state["words"] == [w[0] for w in timeline["words"]], state["words"]
    assert state["phones"] == len(timeline["phones"]) and state["painted"] > 100, state
    assert "/view?" in state["audioSrc"] and "type=temp" in state["audioSrc"], state["audioSrc"]
    assert abs(state["duration"] - timeline["duration_s"]) < 0.1, state
    # Play (a real click, as a user does): the cursor follows the audio.
    frontend.page.locator(".th-panel.th-timeline .th-play").click()
    frontend.page.wait_for_function(
        "() => { const a = document.querySelector('.th-panel.th-timeline audio'); return a && a.currentTime > 0.5; }",
        timeout=20_000)
    playing = frontend.page.evaluate(TIMELINE_JS)
    assert playing["cursor"] > 0 and playing["time"] > 0.5, playing
    frontend.page.wait_for_timeout(300)
    panel_shot(frontend, artifacts_dir, "TalkingHeadVisemeAligner", "timeline")
    frontend.page.evaluate("() => document.querySelector('.th-panel.th-timeline audio')?.pause()")

    # Reference Encoder: a badge per check, coloured by verdict, the advice on hover.
    reference = node_ui(entry, "talkinghead_reference")
    badges = frontend.page.evaluate(
        "() => [...document.querySelectorAll('.th-panel.th-reference .th-badge')]"
        ".map(b => ({verdict: b.dataset.verdict, cls: b.className, title: b.title, text: b.textContent}))")
    assert len(badges) == len(reference["checks"]), badges
    for badge, check in zip(badges, reference["checks"]):
        assert badge["verdict"] == check["verdict"] and f"th-{check['verdict']}" in badge["cls"], (badge, check)
        assert check["advice"] in badge["title"] and check["factor"] in badge["text"], (badge, check)
    assert {b["verdict"] for b in badges} >= {"pass"}, badges
    panel_shot(frontend, artifacts_dir, "TalkingHeadReferenceEncoder", "reference")

    # Mux: ComfyUI's player plays the file from /view; our panel shows duration and A/V offset.
    mux = node_ui(entry, "talkinghead_mux")
    filename = next(ui["images"][0]["filename"] for ui in entry["outputs"].values() if ui.get("talkinghead_mux"))
    show_node(frontend, "TalkingHeadMux")
    frontend.page.wait_for_function(
        "(name) => [...document.querySelectorAll('video')].some(v => (v.currentSrc || v.src).includes('/view?') "
        "&& decodeURIComponent(v.currentSrc || v.src).includes(name) && v.readyState >= 2)",
        arg=filename, timeout=30_000)
    text = frontend.page.locator(".th-panel.th-mux").inner_text()
    assert f"{mux['duration_s']:.2f} s" in text and "A/V offset" in text, text
    assert f"{mux['av_offset_ms']:+.1f} ms" in text, text
    if mux.get("watermark_payload_hex"):
        assert mux["watermark_payload_hex"] in text, text
        readback = {True: "read back", False: "not readable back"}.get(mux.get("watermark_readable"))
        if readback:  # clips up to 512x512 x 125 frames are read back after writing
            assert readback in text, text
    panel_shot(frontend, artifacts_dir, "TalkingHeadMux", "mux")
    assert not frontend.our_errors(), "\n".join(frontend.our_errors())


WATERMARK_GRAPH = {
    "1": {"class_type": "TalkingHeadLoadImage", "inputs": {"image": "(sample) astronaut"},
          "_meta": {"title": "Portrait"}},
    "2": {"class_type": "TalkingHeadWatermark", "inputs": {"images": ["1", 0], "clip_id": 4242, "strength": 1.5},
          "_meta": {"title": "Watermark"}},
    "3": {"class_type": "TalkingHeadWatermarkDetect", "inputs": {"images": ["2", 0]},
          "_meta": {"title": "Detect Watermark"}},
}


def load_watermark_graph(frontend) -> None:
    ui = workflow_format.api_to_ui(WATERMARK_GRAPH)
    res = frontend.page.evaluate(LOAD_JS, [ui, "watermark check"])
    assert not res["unregistered"], res


def test_watermark_panels_show_payload_and_confidence(frontend, comfy_server, artifacts_dir):
    frontend.open()
    load_watermark_graph(frontend)
    entry = queue_and_wait(frontend, comfy_server)
    detected = node_ui(entry, "talkinghead_watermark", mode="detect")
    frontend.page.wait_for_function(
        "() => document.querySelectorAll('.th-panel.th-watermark').length === 2", timeout=30_000)
    texts = frontend.page.evaluate(
        "() => Object.fromEntries(window.app.graph._nodes.map(n => [n.type, "
        "(n.widgets || []).find(w => w.name === 'talkinghead_panel')?.element?.innerText ?? null]))")
    embed_text, detect_text = texts["TalkingHeadWatermark"], texts["TalkingHeadWatermarkDetect"]
    assert "watermark embedded" in embed_text and "clip 4242" in embed_text, embed_text
    assert "strength 1.50, PSNR >= 36.5 dB" in embed_text, embed_text  # the optional strength widget
    payload = embed_text.split("payload", 1)[1].split()[0]
    assert len(payload) == 16, embed_text
    assert f"confidence z {detected['confidence']:.1f}" in detect_text, detect_text
    if detected["found"]:
        assert payload in detect_text and "watermark found" in detect_text, detect_text
    panel_shot(frontend, artifacts_dir, "TalkingHeadWatermarkDetect", "watermark")
    assert not frontend.our_errors(), "\n".join(frontend.our_errors())


# -- graceful degradation ------------------------------------------------------------------------

def _warnings(frontend) -> list[str]:
    return [line for line in frontend.console if line.startswith("warning:") and "TalkingHead.UI" in line]


def test_without_add_dom_widget_nodes_run_and_a_warning_names_it(frontend, comfy_server):
    frontend.open()
    load_watermark_graph(frontend)
    # A frontend whose nodes lack addDOMWidget (older, or a different one).
    frontend.page.evaluate("() => window.app.graph._nodes.forEach(n => { n.addDOMWidget = undefined; })")
    queue_and_wait(frontend, comfy_server)
    frontend.page.wait_for_timeout(1000)
    warnings = _warnings(frontend)
    assert any("addDOMWidget" in w for w in warnings), frontend.console[-20:]
    assert frontend.page.evaluate("() => document.querySelectorAll('.th-panel').length") == 0
    assert not frontend.our_errors(), "\n".join(frontend.our_errors())


def test_without_register_extension_nodes_run_and_a_warning_names_it(frontend, comfy_server):
    # Serve our extension to a frontend whose app has no registerExtension (restored right after,
    # so that only our module sees the gap).
    prelude = ("const __th_app = window.comfyAPI.app.app; const __th_reg = __th_app.registerExtension;"
               "__th_app.registerExtension = undefined; setTimeout(() => { __th_app.registerExtension = __th_reg; });\n")

    def patched(route):
        response = route.fetch()
        route.fulfill(response=response, body=prelude + response.text(),
                      headers={**response.headers, "content-type": "text/javascript"})

    frontend.page.route(f"**{EXTENSION_JS}", patched)
    frontend.open()
    frontend.page.wait_for_timeout(500)
    names = frontend.page.evaluate("() => (window.app.extensions || []).map(e => e.name)")
    assert "TalkingHead.UI" not in names
    assert any("registerExtension" in w for w in _warnings(frontend)), frontend.console[-20:]
    load_watermark_graph(frontend)
    entry = queue_and_wait(frontend, comfy_server)  # the nodes still run
    assert node_ui(entry, "talkinghead_watermark", mode="detect")["frames_seen"] == 1
    assert not frontend.our_errors(), "\n".join(frontend.our_errors())


RECOGNITION_GRAPH = {
    "1": {"class_type": "TalkingHeadLoadAudio", "inputs": {"audio": "(sample) speech, synthesised by espeak-ng"},
          "_meta": {"title": "Speech"}},
    "2": {"class_type": "TalkingHeadVisemeAligner",
          "inputs": {"audio": ["1", 0], "fps": 25.0, "transcript": "", "language": "en-us", "export": "none",
                     "filename_prefix": "TalkingHead/heard"},
          "_meta": {"title": "Viseme Aligner"}},
}


def test_recognised_words_show_on_the_aligner_and_become_the_transcript(frontend, comfy_server):
    """No transcript: the timeline says what recognition heard; one click puts it in the transcript input."""
    frontend.open()
    res = frontend.page.evaluate(LOAD_JS, [workflow_format.api_to_ui(RECOGNITION_GRAPH), "recognition check"])
    assert not res["unregistered"], res
    entry = queue_and_wait(frontend, comfy_server)
    timeline = node_ui(entry, "talkinghead_timeline")
    assert timeline["method"] in ("whisper", "recognition") and timeline["heard"], timeline["method"]
    frontend.page.wait_for_function("() => !!document.querySelector('.th-panel.th-timeline .th-heard')",
                                    timeout=30_000)
    shown = frontend.page.locator(".th-panel.th-timeline .th-heard-text").inner_text()
    assert shown == timeline["heard"], shown
    # the audio quality report as badges, one per factor, the advice on hover
    badges = frontend.page.evaluate(
        "() => [...document.querySelectorAll('.th-panel.th-timeline .th-audio-quality .th-badge')]"
        ".map(b => ({verdict: b.dataset.verdict, text: b.textContent, title: b.title}))")
    checks = timeline["audio_quality"]["checks"]
    assert [b["text"] for b in badges] == [f"{c['factor']}: {c['value_text']}" for c in checks], badges
    assert all(c["advice"] in b["title"] and b["verdict"] == c["verdict"] for b, c in zip(badges, checks)), badges
    show_node(frontend, "TalkingHeadVisemeAligner")
    frontend.page.locator(".th-panel.th-timeline .th-use-transcript").click()
    value = frontend.page.evaluate(
        "() => window.app.graph._nodes.find(n => n.type === 'TalkingHeadVisemeAligner')"
        ".widgets.find(w => w.name === 'transcript').value")
    assert value == timeline["heard"], value
    assert not frontend.our_errors(), "\n".join(frontend.our_errors())
