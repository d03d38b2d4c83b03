// Talking Head: the pack's frontend extension, served by ComfyUI from WEB_DIRECTORY.
// For now it marks our nodes with the pack's colour and shows the Mux report under the preview.
import { app } from "../../scripts/app.js";

const PACK_PREFIX = "TalkingHead";
const NODE_COLOR = "#2a3d4f";
const NODE_BGCOLOR = "#1d2b38";

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
    if (nodeData.name === "TalkingHeadMux") {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        onExecuted?.apply(this, arguments);
        const report = output?.talkinghead_mux?.[0];
        if (!report) return;
        // Shown in the node title tooltip area so users see sync quality without opening files.
        this.talkingheadReport =
          `${report.frame_count} frames, ${report.duration_s.toFixed(2)} s, ` +
          `A/V offset ${report.av_offset_ms.toFixed(1)} ms`;
        this.setDirtyCanvas(true, true);
      };
    }
  },
});
