// Talking Head: the pack's frontend extension, served by ComfyUI from WEB_DIRECTORY.
//
// After a node runs, it shows what the node reported (its `ui` output, delivered by the frontend's
// `executed` message) in a panel on the node:
//   Viseme Aligner     a timeline (words, phonemes, viseme strip, jaw-open curve) that plays the audio
//                      with a cursor that follows it; click the timeline to seek
//   Reference Encoder  the quality checks as pass / warn / fail badges, the advice on hover (the
//                      landmark preview is ComfyUI's own image preview under it)
//   Mux                the MP4's duration, A/V offset, watermark payload and content credentials,
//                      above ComfyUI's own player of the file (video with sound)
//   Watermark, Detect  the payload and, for Detect, the confidence
// Files are read through ComfyUI's own /view route. Public extension API only (registerExtension,
// beforeRegisterNodeDef, onExecuted, addDOMWidget); no dependencies. Where the frontend lacks a piece
// of that API, the nodes still run and a console warning names what is missing.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXTENSION = "TalkingHead.UI";
const PACK_PREFIX = "TalkingHead";
const NODE_COLOR = "#2a3d4f";
const NODE_BGCOLOR = "#1d2b38";
const PANEL_WIDGET = "talkinghead_panel";
const MIN_NODE_WIDTH = 400;
// Detectability of A/V offsets (ITU-R BT.1359): audio ahead by > 45 ms or behind by > 125 ms.
const AUDIO_LEAD_LIMIT_MS = 45;
const AUDIO_LAG_LIMIT_MS = 125;
const VISEME_COLORS = ["#3b3b3b", "#e6194b", "#f58231", "#ffe119", "#bfef45", "#3cb44b", "#42d4f4",
  "#4363d8", "#911eb4", "#f032e6", "#fabed4", "#ffd8b1", "#aaffc3", "#dcbeff", "#9a6324"];

const warned = new Set();
function warnMissing(what, effect) {
  if (warned.has(what)) return;
  warned.add(what);
  console.warn(`[${EXTENSION}] this ComfyUI frontend has no ${what}: ${effect}. The Talking Head nodes still run.`);
}

// ---- small DOM helpers ------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function viewURL(ref) {
  const query = new URLSearchParams({
    filename: ref.filename, subfolder: ref.subfolder ?? "", type: ref.type ?? "output",
  });
  const path = `/view?${query}`;
  return typeof api?.apiURL === "function" ? api.apiURL(path) : `/api${path}`;
}

const fixed = (value, digits) => (Number.isFinite(Number(value)) ? Number(value).toFixed(digits) : "n/a");
const signed = (value, digits) => (Number(value) >= 0 ? "+" : "") + fixed(value, digits);

const STYLE = `
.th-panel { box-sizing: border-box; width: 100%; height: 100%; overflow: hidden; font: 11px/1.35 sans-serif;
  color: #ddd; background: #15202b; border-radius: 6px; padding: 6px; display: flex; flex-direction: column; gap: 4px; }
.th-head { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.th-muted { color: #99a; }
.th-heard { display: flex; gap: 6px; align-items: baseline; margin-top: 4px; }
.th-heard-text { flex: 1; white-space: normal; }
.th-play { cursor: pointer; background: #2a3d4f; color: #fff; border: 1px solid #456; border-radius: 4px; padding: 1px 8px; }
.th-play:disabled { opacity: 0.5; cursor: default; }
.th-scroll { overflow-x: auto; overflow-y: hidden; flex: 0 0 auto; }
.th-track { position: relative; cursor: text; }
.th-row { position: relative; height: 16px; }
.th-word, .th-phone { position: absolute; top: 1px; height: 14px; overflow: hidden; white-space: nowrap; text-align: center;
  border-left: 1px solid #456; font-size: 10px; }
.th-word { background: #21364a; }
.th-phone { color: #bcd; }
.th-word.th-active { background: #4a6d8c; color: #fff; }
.th-canvas { display: block; }
.th-cursor { position: absolute; top: 0; bottom: 0; width: 2px; background: #ff5252; pointer-events: none; }
.th-audio { width: 100%; height: 28px; }
.th-badges { display: flex; flex-wrap: wrap; gap: 3px; overflow-y: auto; }
.th-badge { border-radius: 9px; padding: 1px 7px; cursor: help; border: 1px solid transparent; }
.th-pass { background: #1f4d2b; border-color: #2e7d32; }
.th-warn { background: #5c4a12; border-color: #f9a825; }
.th-fail { background: #5c1a1a; border-color: #e53935; }
.th-code { font-family: monospace; background: #0d151c; padding: 0 4px; border-radius: 3px; user-select: all; }
.th-pre { white-space: pre-wrap; margin: 0; overflow-y: auto; font-family: monospace; }
`;

function ensureStyle() {
  if (document.getElementById("talkinghead-style")) return;
  const style = el("style");
  style.id = "talkinghead-style";
  style.textContent = STYLE;
  document.head.appendChild(style);
}

// ---- the panel widget on a node ---------------------------------------------------------------

// Returns an empty panel element on `node` (made once with addDOMWidget, emptied on later runs).
function panel(node, kind, minHeight) {
  let widget = node.widgets?.find((w) => w.name === PANEL_WIDGET);
  if (!widget) {
    if (typeof node.addDOMWidget !== "function") {
      warnMissing("node.addDOMWidget", `results of ${node.type} are not shown on the node`);
      return null;
    }
    ensureStyle();
    const root = el("div", "th-panel");
    const state = { minHeight };
    widget = node.addDOMWidget(PANEL_WIDGET, "talkinghead", root, {
      serialize: false,
      hideOnZoom: false,
      getValue: () => "",
      setValue: () => {},
      getMinHeight: () => state.minHeight,
    });
    if (!widget) return null;
    widget.serialize = false; // a report, not an input: kept out of saved workflows and prompts
    widget.talkingheadState = state;
  }
  widget.talkingheadState.minHeight = minHeight;
  const root = widget.element;
  root.className = `th-panel th-${kind}`;
  root.replaceChildren();
  root.onpointerdown = (event) => event.stopPropagation(); // clicks stay in the panel
  const width = Math.max(node.size?.[0] ?? 0, MIN_NODE_WIDTH);
  const height = node.computeSize?.()?.[1] ?? node.size?.[1];
  if (typeof node.setSize === "function" && height) node.setSize([width, Math.max(height, node.size?.[1] ?? 0)]);
  node.setDirtyCanvas?.(true, true);
  return root;
}

// ---- Viseme Aligner: timeline with playback ---------------------------------------------------

function drawTimeline(canvas, data, width) {
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const height = canvas.height;
  ctx.clearRect(0, 0, width, height);
  const frames = data.visemes?.length ?? 0;
  const frameWidth = frames ? width / frames : 0;
  const stripTop = 0;
  const stripHeight = 14;
  for (let i = 0; i < frames; i++) {
    ctx.fillStyle = VISEME_COLORS[data.visemes[i] % VISEME_COLORS.length];
    ctx.fillRect(Math.floor(i * frameWidth), stripTop, Math.ceil(frameWidth) + 1, stripHeight);
  }
  const curveTop = stripHeight + 4;
  const curveHeight = height - curveTop - 2;
  ctx.fillStyle = "#0d151c";
  ctx.fillRect(0, curveTop, width, curveHeight);
  const jaw = data.jaw_open ?? [];
  if (jaw.length) {
    ctx.beginPath();
    for (let i = 0; i < jaw.length; i++) {
      const x = (i + 0.5) * (width / jaw.length);
      const y = curveTop + curveHeight * (1 - Math.max(0, Math.min(1, jaw[i])));
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    }
    ctx.strokeStyle = "#4fc3f7";
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }
  ctx.fillStyle = "#99a";
  ctx.font = "9px sans-serif";
  ctx.fillText("jaw open", 3, curveTop + 10);
}

function showTimeline(node, data) {
  const root = panel(node, "timeline", 250);
  if (!root) return;
  const duration = Math.max(Number(data.duration_s) || 0, 1e-3);
  const width = Math.max(360, Math.round(duration * 110));
  root.dataset.duration = String(duration);

  const head = el("div", "th-head");
  const play = el("button", "th-play", "▶ play");
  const clock = el("span", "th-time", `0.00 / ${duration.toFixed(2)} s`);
  head.append(play, clock, el("span", "th-muted",
    `${data.method ?? ""} · ${data.words?.length ?? 0} words · ${data.phones?.length ?? 0} phones · ${data.visemes?.length ?? 0} frames at ${fixed(data.fps, 3)} fps`));

  const scroll = el("div", "th-scroll");
  const track = el("div", "th-track");
  track.style.width = `${width}px`;
  const words = el("div", "th-row th-words");
  const phones = el("div", "th-row th-phones");
  const place = (span, start, end) => {
    span.style.left = `${(100 * start) / duration}%`;
    span.style.width = `${Math.max(0.2, (100 * (end - start)) / duration)}%`;
  };
  const wordSpans = (data.words ?? []).map(([text, start, end]) => {
    const span = el("span", "th-word", text);
    span.title = `${text}: ${fixed(start, 3)}-${fixed(end, 3)} s`;
    span.dataset.start = start;
    span.dataset.end = end;
    place(span, start, end);
    words.appendChild(span);
    return span;
  });
  for (const [phone, start, end] of data.phones ?? []) {
    const span = el("span", "th-phone", phone === "SIL" ? "" : phone);
    span.title = `${phone}: ${fixed(start, 3)}-${fixed(end, 3)} s`;
    place(span, start, end);
    phones.appendChild(span);
  }
  const canvas = el("canvas", "th-canvas");
  canvas.width = width;
  canvas.height = 64;
  canvas.title = "viseme per frame (colour) and jaw opening (curve)";
  const cursor = el("div", "th-cursor");
  track.append(words, phones, canvas, cursor);
  scroll.appendChild(track);
  drawTimeline(canvas, data, width);

  const audio = el("audio", "th-audio");
  audio.controls = true;
  audio.preload = "auto";
  if (data.audio?.filename) audio.src = viewURL(data.audio);
  else {
    play.disabled = true;
    play.title = "no audio preview (the node ran headless)";
  }
  root.append(head, scroll, audio);
  const audioChecks = data.audio_quality?.checks ?? [];
  if (audioChecks.length) {
    const quality = qualityBadges(audioChecks, (check) => check.value_text);
    quality.classList.add("th-audio-quality");
    root.appendChild(quality);
  }
  if (data.heard) {
    // what recognition heard: correct it in place, or take it as the transcript and run again
    const heard = el("div", "th-heard");
    const use = el("button", "th-use-transcript", "use as transcript");
    use.title = "Copy the recognised words into this node's transcript input; correct them there and run again to align exactly.";
    use.addEventListener("click", () => {
      const widget = node.widgets?.find((w) => w.name === "transcript");
      if (!widget) return;
      widget.value = data.heard;
      widget.callback?.(widget.value);
      node.setDirtyCanvas?.(true, true);
      use.textContent = "copied";
    });
    heard.append(el("span", "th-muted", "heard:"), el("span", "th-heard-text", data.heard), use);
    root.appendChild(heard);
  }

  let frame = null;
  const follow = () => {
    const t = audio.currentTime || 0;
    const x = (t / duration) * width;
    cursor.style.left = `${x}px`;
    clock.textContent = `${t.toFixed(2)} / ${duration.toFixed(2)} s`;
    for (const span of wordSpans) {
      span.classList.toggle("th-active", t >= Number(span.dataset.start) && t < Number(span.dataset.end));
    }
    if (x < scroll.scrollLeft || x > scroll.scrollLeft + scroll.clientWidth - 20) {
      scroll.scrollLeft = Math.max(0, x - 40);
    }
    frame = audio.paused ? null : requestAnimationFrame(follow);
  };
  audio.addEventListener("play", () => { play.textContent = "❚❚ pause"; if (!frame) follow(); });
  audio.addEventListener("pause", () => { play.textContent = "▶ play"; follow(); });
  audio.addEventListener("seeked", follow);
  audio.addEventListener("timeupdate", () => { if (!frame) follow(); });
  play.addEventListener("click", () => {
    if (audio.paused) audio.play()?.catch?.((err) => console.warn(`[${EXTENSION}] audio: ${err}`));
    else audio.pause();
  });
  track.addEventListener("click", (event) => {
    const box = track.getBoundingClientRect();
    if (!box.width || !audio.src) return;
    audio.currentTime = Math.max(0, Math.min(duration, ((event.clientX - box.left) / box.width) * duration));
  });
}

// ---- Reference Encoder: quality badges --------------------------------------------------------

function showReference(node, data) {
  const checks = data.checks ?? [];
  const root = panel(node, "reference", 40 + 22 * Math.ceil(checks.length / 3));
  if (!root) return;
  const counts = { pass: 0, warn: 0, fail: 0 };
  for (const check of checks) counts[check.verdict] = (counts[check.verdict] ?? 0) + 1;
  root.append(el("div", "th-head",
    `${data.quality_ok ? "quality OK" : "quality FAIL"}: ${counts.fail} fail, ${counts.warn} warn, ${counts.pass} pass · ${data.face_count ?? "?"} face(s)`));
  root.appendChild(qualityBadges(checks, (check) => check.value));
}

// One badge per measured factor, coloured by verdict, the advice on hover (reference and audio checks).
function qualityBadges(checks, valueText) {
  const badges = el("div", "th-badges");
  for (const check of checks) {
    const verdict = ["pass", "warn", "fail"].includes(check.verdict) ? check.verdict : "warn";
    const badge = el("span", `th-badge th-${verdict}`, `${check.factor}: ${valueText(check)}`);
    badge.title = `${check.verdict.toUpperCase()} · ${check.group ? check.group + " · " : ""}${check.advice}`;
    badge.dataset.verdict = verdict;
    badges.appendChild(badge);
  }
  return badges;
}

// ---- Mux: player and sync figures -------------------------------------------------------------

function showMux(node, data) {
  // The player (video with sound, from /view) is ComfyUI's own preview of the node's output; this
  // panel adds what the file measured: duration, A/V offset, watermark, content credentials.
  const root = panel(node, "mux", 64);
  if (!root) return;
  const offset = Number(data.av_offset_ms);
  const inSync = offset >= -AUDIO_LAG_LIMIT_MS && offset <= AUDIO_LEAD_LIMIT_MS;
  const figures = el("div", "th-head");
  const sync = el("span", `th-badge ${inSync ? "th-pass" : "th-fail"} th-offset`, `A/V offset ${signed(offset, 1)} ms`);
  sync.title = `Measured from the decoded file. Detectable beyond audio ${AUDIO_LEAD_LIMIT_MS} ms ahead or ${AUDIO_LAG_LIMIT_MS} ms behind.`;
  figures.append(
    el("span", "th-duration", `${fixed(data.duration_s, 2)} s`),
    el("span", "th-muted", `${data.frame_count ?? "?"} frames at ${fixed(data.fps, 3)} fps`),
    sync,
    el("span", "th-muted", `duration difference ${fixed(data.duration_diff_ms, 1)} ms`),
  );
  const provenance = el("div", "th-head th-muted");
  if (data.watermark_payload_hex) {
    provenance.append("watermark ", el("span", "th-code th-payload", data.watermark_payload_hex));
    if (data.watermark_readable === false) {
      const unread = el("span", "th-badge th-warn th-unreadable", "not readable back");
      unread.title = "The detector could not read the mark from the written file: render larger or longer clips.";
      provenance.append(" ", unread);
    } else if (data.watermark_readable === true) provenance.append(" ", el("span", "th-badge th-pass", "read back"));
  } else provenance.append("no watermark");
  if (data.credentials) provenance.append(` · content credentials: ${data.credentials}`);
  provenance.title = (data.notes ?? []).join("\n");
  root.append(figures, provenance);
}

// ---- Watermark / Detect -----------------------------------------------------------------------

function payloadFields(fields) {
  if (!fields) return "";
  const when = Number(fields.unix_time_s) ? new Date(Number(fields.unix_time_s) * 1000).toISOString().replace(".000Z", "Z") : "?";
  return `generator ${fields.generator_id} · clip ${fields.clip_id} · ${when}`;
}

function showWatermark(node, data) {
  const root = panel(node, "watermark", 84);
  if (!root) return;
  const head = el("div", "th-head");
  if (data.mode === "detect") {
    const badge = el("span", `th-badge ${data.found ? "th-pass" : "th-fail"} th-found`, data.found ? "watermark found" : "no watermark");
    badge.title = "Confidence is a z-score: above about 5 the mark is certainly there.";
    head.append(badge, el("span", "th-confidence", `confidence z ${fixed(data.confidence, 1)}`),
      el("span", "th-muted", `in ${Math.round(100 * (Number(data.frames_marked_share) || 0))}% of ${data.frames_seen} frames`));
  } else {
    head.append(el("span", "th-badge th-pass", "watermark embedded"), el("span", "th-muted", `${data.frames} frames`));
    if (data.strength !== undefined && Number(data.strength) !== 1) {
      head.append(el("span", "th-muted th-strength", `strength ${fixed(data.strength, 2)}, PSNR >= ${fixed(data.psnr_floor_db, 1)} dB`));
    }
  }
  root.appendChild(head);
  if (data.payload_hex) {
    const line = el("div", "th-head");
    line.append("payload ", el("span", "th-code th-payload", data.payload_hex));
    root.append(line, el("div", "th-muted", payloadFields(data.fields)));
  }
}

function showText(node, text) {
  const root = panel(node, "text", 90);
  if (root) root.appendChild(el("pre", "th-pre", text));
}

// ---- wiring -----------------------------------------------------------------------------------

const RENDERERS = {
  TalkingHeadVisemeAligner: (node, out) => out.talkinghead_timeline?.[0] && showTimeline(node, out.talkinghead_timeline[0]),
  TalkingHeadReferenceEncoder: (node, out) => out.talkinghead_reference?.[0] && showReference(node, out.talkinghead_reference[0]),
  TalkingHeadMux: (node, out) => out.talkinghead_mux?.[0] && showMux(node, out.talkinghead_mux[0]),
  TalkingHeadWatermark: (node, out) => out.talkinghead_watermark?.[0] && showWatermark(node, out.talkinghead_watermark[0]),
  TalkingHeadWatermarkDetect: (node, out) => out.talkinghead_watermark?.[0] && showWatermark(node, out.talkinghead_watermark[0]),
  TalkingHeadArtifactReport: (node, out) => out.text?.[0] && showText(node, out.text[0]),
};

const extension = {
  name: EXTENSION,
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith(PACK_PREFIX) || !nodeType?.prototype) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.color = this.color ?? NODE_COLOR;
      this.bgcolor = this.bgcolor ?? NODE_BGCOLOR;
      return result;
    };
    const render = RENDERERS[nodeData.name];
    if (!render) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      try {
        if (output) render(this, output);
      } catch (err) {
        console.warn(`[${EXTENSION}] could not show the result of ${nodeData.name}: ${err?.stack ?? err}`);
      }
    };
  },
};

if (typeof app?.registerExtension === "function") {
  app.registerExtension(extension);
} else {
  warnMissing("app.registerExtension", "Talking Head's panels (timeline, quality badges, player, watermark) are off");
}
