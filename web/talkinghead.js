// Talking Head: the pack's frontend extension, served by ComfyUI from WEB_DIRECTORY.
// Colours our nodes, and shows what a node reports after running (Mux sync figures, VisemeAligner
// method and warnings, ReferenceEncoder quality report) in a read-only text box on the node, so users need not open the console.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const PACK_PREFIX = "TalkingHead";
const NODE_COLOR = "#2a3d4f";
const NODE_BGCOLOR = "#1d2b38";
const REPORT_WIDGET = "talkinghead_report";

function summarise(nodeName, output) {
  if (nodeName === "TalkingHeadMux") {
    const report = output?.talkinghead_mux?.[0];
    if (!report) return null;
    const lines = [
      `${report.frame_count} frames at ${Number(report.fps).toFixed(3)} fps, ${Number(report.duration_s).toFixed(2)} s`,
      `A/V offset ${Number(report.av_offset_ms).toFixed(1)} ms, duration difference ${Number(report.duration_diff_ms).toFixed(1)} ms`,
    ];
    return lines.concat(report.notes ?? []).join("\n");
  }
  if (nodeName === "TalkingHeadVisemeAligner" || nodeName === "TalkingHeadReferenceEncoder") {
    return output?.text?.[0] ?? null;
  }
  return null;
}

function showReport(node, text) {
  let widget = node.widgets?.find((w) => w.name === REPORT_WIDGET);
  if (!widget) {
    const made = ComfyWidgets.STRING(node, REPORT_WIDGET, ["STRING", { multiline: true }], app);
    widget = made?.widget;
    if (!widget) return;
    if (widget.inputEl) {
      widget.inputEl.readOnly = true;
      widget.inputEl.style.opacity = 0.8;
    }
    widget.serialize = false; // a report, not an input: keep it out of saved workflows and prompts
  }
  widget.value = text;
  node.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "TalkingHead.UI",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith(PACK_PREFIX)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.color = this.color ?? NODE_COLOR;
      this.bgcolor = this.bgcolor ?? NODE_BGCOLOR;
      return result;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      const text = summarise(nodeData.name, output);
      if (text) showReport(this, text);
    };
  },
});
