"""The pack in the real ComfyUI frontend (1.32, served by the real server) in headless Chromium.

Chromium is Debian's (/usr/bin/chromium); playwright is PyPI's, driving it through
executable_path (no `playwright install`). Every request that is not to 127.0.0.1 is aborted.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from pathlib import Path

import pytest

from comfy_server import PACK_FOLDER, REPO_ROOT
from talkinghead.nodes.headless import workflow_format

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
EXTENSION_NAME = "TalkingHead.UI"
READY_NODE = "TalkingHeadMux"
WORKFLOWS_DIR = REPO_ROOT / "workflows"
UI_WORKFLOWS = workflow_format.templates()  # the editor-format files (the template browser's)


# Console noise of a sandboxed frontend that says nothing about the pack: 404s for optional user
# files (user.css, templates) and the registry look-ups the CSP / our route block.
NOISE = ("Failed to load resource", "Content Security Policy", "api.comfy.org")


def _ours(text: str) -> bool:
    """An error raised by our extension's JS (its URL is in the message, location or stack)."""
    return f"/extensions/{PACK_FOLDER}/" in text or EXTENSION_NAME in text


def _significant(errors: list[str]) -> list[str]:
    return [e for e in errors if not any(n in e for n in NOISE)]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class FrontendPage:
    """One page on the server's frontend, with console errors collected."""

    def __init__(self, page, server):
        self.page = page
        self.server = server
        self.console: list[str] = []  # "type: text @ url"
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"
                                                            f"\n{getattr(exc, 'stack', '')}"))
        page.route("**/*", self._route)

    @staticmethod
    def _route(route):
        host = urllib.parse.urlparse(route.request.url).hostname
        if host in ("127.0.0.1", None):
            route.continue_()
        else:
            route.abort()

    def _on_console(self, msg):
        loc = msg.location or {}
        line = f"{msg.type}: {msg.text} @ {loc.get('url', '')}:{loc.get('lineNumber', '')}"
        self.console.append(line)
        if msg.type == "error":
            self.errors.append(line)

    def open(self):
        t0 = time.monotonic()
        self.page.goto(self.server.url + "/", wait_until="domcontentloaded", timeout=60_000)
        self.page.wait_for_function(
            f"() => !!(window.app?.graph && window.LiteGraph?.registered_node_types?.[{READY_NODE!r}])",
            timeout=90_000)
        return time.monotonic() - t0

    def our_errors(self) -> list[str]:
        return [e for e in self.errors if _ours(e)]

    def dialogs_text(self) -> str:
        return self.page.evaluate(
            "() => [...document.querySelectorAll('.p-dialog, [role=dialog]')]"
            ".filter(d => d.offsetParent !== null).map(d => d.innerText).join('\\n---\\n')")


@pytest.fixture
def frontend(browser, comfy_server, artifacts_dir, request):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    fp = FrontendPage(page, comfy_server)
    yield fp
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    (artifacts_dir / f"browser-{name}.console.txt").write_text("\n".join(fp.console))
    try:
        page.screenshot(path=str(artifacts_dir / f"browser-{name}.png"))
    except Exception:
        pass
    context.close()


def test_extension_is_served_and_registered(frontend, comfy_server):
    served = comfy_server.get_json("/extensions")
    ours = [p for p in served if p.startswith(f"/extensions/{PACK_FOLDER}/")]
    assert any(p.endswith(".js") for p in ours), f"GET /extensions lists no JS of ours: {ours}"
    seconds = frontend.open()
    names = frontend.page.evaluate("() => (window.app.extensions || []).map(e => e.name)")
    assert EXTENSION_NAME in names, f"{EXTENSION_NAME!r} not among registered extensions {names}"
    assert not frontend.our_errors(), "\n".join(frontend.our_errors())
    print(f"\n[frontend] page ready in {seconds:.1f} s; our extension files: {ours}")


def test_ui_workflows_exist():
    assert UI_WORKFLOWS, f"no UI-format workflows in {WORKFLOWS_DIR}"


CONSENT_JS = """
() => {
  const nodes = window.app.graph.nodes || window.app.graph._nodes;
  let ticked = 0;
  for (const node of nodes.filter(n => n.type === "TalkingHeadReferenceEncoder")) {
    const widget = node.widgets.find(w => w.name === "consent");
    widget.value = true;
    widget.callback?.(true);
    ticked += 1;
  }
  return ticked;
}
"""

LOAD_JS = """
async ([wf, name]) => {
  await window.app.loadGraphData(wf, true, true, name);
  const types = window.LiteGraph.registered_node_types;
  const nodes = window.app.graph.nodes || window.app.graph._nodes;
  return {
    wanted: (wf.nodes || []).map(n => n.type),
    loaded: nodes.map(n => n.type),
    unregistered: (wf.nodes || []).map(n => n.type).filter(t => !types[t]),
    withErrors: nodes.filter(n => n.has_errors).map(n => n.type),
  };
}
"""


@pytest.mark.parametrize("workflow", UI_WORKFLOWS, ids=lambda p: p.name)
def test_ui_workflow_loads_without_missing_nodes(workflow, frontend):
    frontend.open()
    wf = json.loads(workflow.read_text())
    before = len(frontend.errors)
    res = frontend.page.evaluate(LOAD_JS, [wf, workflow.name])
    load_errors = _significant(frontend.errors[before:])
    assert not res["unregistered"], f"{workflow.name}: missing node types {res['unregistered']}"
    assert not load_errors, (f"{workflow.name}: the page logged errors while loading it:\n"
                             + "\n".join(load_errors))
    assert sorted(res["loaded"]) == sorted(res["wanted"]), res
    assert not res["withErrors"], f"{workflow.name}: nodes flagged with errors {res['withErrors']}"
    frontend.page.wait_for_timeout(500)
    dialogs = frontend.dialogs_text()
    assert "missing" not in dialogs.lower(), f"{workflow.name}: dialog shown:\n{dialogs}"
    assert not frontend.our_errors(), "\n".join(frontend.our_errors())


PREVIEW_JS = """
() => {
  const muxes = (window.app.graph.nodes || window.app.graph._nodes)
      .filter(n => n.type === 'TalkingHeadMux');
  const videos = [...document.querySelectorAll('video')].map(v => ({
      src: v.currentSrc || v.src, readyState: v.readyState,
      width: v.videoWidth, height: v.videoHeight}));
  return {
    muxes: muxes.map(n => ({id: String(n.id), media: n.previewMediaType || null,
                            hasVideo: !!n.videoContainer, imgs: (n.imgs || []).length})),
    videos,
  };
}
"""


def test_queue_workflow_from_page_shows_video(frontend, comfy_server, artifacts_dir):
    assert UI_WORKFLOWS, "no UI workflow to queue"
    by_name = {p.name: p for p in UI_WORKFLOWS}
    wanted = os.environ.get("TALKINGHEAD_BROWSER_WORKFLOW", "talking_head")
    workflow = by_name.get(workflow_format.TEMPLATE_TITLES.get(wanted, wanted) + ".json", UI_WORKFLOWS[0])
    frontend.open()
    wf = json.loads(workflow.read_text())
    res = frontend.page.evaluate(LOAD_JS, [wf, workflow.name])
    assert not res["unregistered"], res
    # The user attests consent on the Reference Encoder, as the shipped workflow asks them to.
    ticked = frontend.page.evaluate(CONSENT_JS)
    api_graph = frontend.page.evaluate("async () => (await window.app.graphToPrompt()).output")
    assert any(n["class_type"] == "TalkingHeadMux" for n in api_graph.values()), api_graph
    encoders = [n for n in api_graph.values() if n["class_type"] == "TalkingHeadReferenceEncoder"]
    assert ticked == len(encoders) and all(n["inputs"]["consent"] is True for n in encoders), api_graph
    # every widget value reached the prompt as the API twin of the workflow has it (widget order)
    twin = json.loads(workflow_format.api_path_for(workflow).read_text())
    for node_id, node in twin.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list) or name == "consent":
                continue
            assert api_graph[node_id]["inputs"].get(name) == value, (node_id, name, api_graph[node_id]["inputs"])

    t0 = time.monotonic()
    with frontend.page.expect_response(
            lambda r: r.url.endswith("/prompt") and r.request.method == "POST",
            timeout=60_000) as resp_info:
        frontend.page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
    resp = resp_info.value
    body = resp.json()
    assert resp.status == 200 and "prompt_id" in body, (resp.status, body)
    entry = comfy_server.wait_history(body["prompt_id"], timeout=540)
    status = entry["status"]
    assert status["status_str"] == "success", json.dumps(status, indent=1)[:4000]
    seconds = time.monotonic() - t0

    mux_ids = {nid for nid, ui in entry["outputs"].items() if ui.get("talkinghead_mux")}
    assert mux_ids, entry["outputs"]
    filename = entry["outputs"][sorted(mux_ids)[0]]["images"][0]["filename"]
    try:
        frontend.page.wait_for_function(
            "(name) => [...document.querySelectorAll('video')].some(v => "
            "(v.currentSrc || v.src).includes(encodeURIComponent(name)) && v.readyState >= 2)",
            arg=filename, timeout=30_000)
    except Exception:
        pass
    preview = frontend.page.evaluate(PREVIEW_JS)
    frontend.page.screenshot(path=str(artifacts_dir / "browser-queued-workflow.png"))
    shown = [m for m in preview["muxes"] if m["media"] == "video" or m["hasVideo"] or m["imgs"]]
    assert shown, f"the Mux node shows no preview: {preview}"
    videos = [v for v in preview["videos"] if urllib.parse.quote(filename) in v["src"]
              or filename in urllib.parse.unquote(v["src"])]
    assert videos, f"no <video> element plays {filename}: {preview}"
    assert videos[0]["readyState"] >= 2 and videos[0]["width"] > 0, (
        f"the browser could not decode {filename}: {videos[0]}")
    # Our extension shows each node's report in a panel on the node (test_editor_experience.py
    # checks the panels in detail).
    panels = frontend.page.evaluate(
        "() => Object.fromEntries(window.app.graph._nodes.map(n => [n.type, "
        "(n.widgets || []).find(w => w.name === 'talkinghead_panel')?.element?.innerText ?? null]))")
    assert "A/V offset" in (panels.get("TalkingHeadMux") or ""), panels
    assert "forced_alignment" in (panels.get("TalkingHeadVisemeAligner") or ""), panels
    assert not frontend.our_errors(), "\n".join(frontend.our_errors())
    print(f"\n[frontend] {workflow.name} queued from the page, done in {seconds:.1f} s")
