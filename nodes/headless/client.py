"""Runs an API-format graph on a running ComfyUI server: POST /prompt, follow /ws, fetch /view.

Only loopback or whatever URL the user gives; nothing else is contacted.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from .executor import GraphValidationError, NodeExecutionError

OUTPUT_FILE_KEYS = ("images", "gifs", "video", "videos", "audio")


class ServerUnreachable(ConnectionError):
    pass


@dataclass
class ServerRun:
    """A finished run on the server.

    Attributes:
        prompt_id: ComfyUI's id of the queued prompt.
        outputs: node id -> UI outputs, from /history.
        files: local paths of the downloaded output files.
        events: every websocket message (type, data) seen for this prompt, in order.
        node_errors: outputs ComfyUI refused while running the others (shaped like /prompt's).
    """

    prompt_id: str
    outputs: dict[str, dict[str, Any]]
    files: list[str] = field(default_factory=list)
    events: list[tuple[str, dict]] = field(default_factory=list)
    node_errors: dict[str, dict] = field(default_factory=dict)


class ComfyClient:
    def __init__(self, server_url: str, timeout_s: float = 30.0):
        self.server_url = server_url.rstrip("/")
        if not self.server_url.startswith(("http://", "https://")):
            self.server_url = "http://" + self.server_url
        self.timeout_s = timeout_s
        self.client_id = str(uuid.uuid4())

    # -- HTTP --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Optional[dict] = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise ServerUnreachable(
                f"--server: could not reach ComfyUI at {self.server_url} ({getattr(exc, 'reason', exc)}). "
                "Start ComfyUI, or check the address and port."
            ) from exc

    def submit(self, graph: dict) -> tuple[str, dict]:
        """Queues the graph; returns (prompt_id, node_errors of outputs ComfyUI dropped).

        ComfyUI refuses a graph (HTTP 400, GraphValidationError here) only when no output is
        valid; otherwise it queues the valid outputs and lists the others in `node_errors`.
        """
        status, payload = self._request("POST", "/prompt", {"prompt": graph, "client_id": self.client_id})
        try:
            answer = json.loads(payload or b"{}")
        except json.JSONDecodeError:
            answer = {}
        if status == 200 and "prompt_id" in answer:
            return answer["prompt_id"], answer.get("node_errors") or {}
        if status == 400 or answer.get("node_errors") or answer.get("error"):
            error = answer.get("error") or {"type": "http_400", "message": payload.decode(errors="replace")[:500]}
            if isinstance(error, str):
                error = {"type": "error", "message": error}
            raise GraphValidationError(error, answer.get("node_errors") or {})
        raise ServerUnreachable(f"--server: POST /prompt answered HTTP {status}: {payload[:500]!r}")

    def finished_history(self, prompt_id: str, timeout_s: float = 60.0) -> dict:
        """/history/{id} once ComfyUI has stored it: its websocket says execution_success a moment before
        the prompt worker writes the history entry, so an immediate read can come back empty."""
        deadline = time.monotonic() + timeout_s
        while True:
            entry = self.history(prompt_id)
            if entry.get("status", {}).get("completed") is not None or time.monotonic() > deadline:
                return entry
            time.sleep(0.1)

    def history(self, prompt_id: str) -> dict:
        status, payload = self._request("GET", f"/history/{urllib.parse.quote(prompt_id)}")
        return json.loads(payload).get(prompt_id, {}) if status == 200 else {}

    def download(self, file_info: dict, out_dir: str) -> str:
        """Fetches one output file through /view into out_dir (keeping its subfolder), atomically."""
        query = urllib.parse.urlencode(
            {"filename": file_info["filename"], "subfolder": file_info.get("subfolder", ""),
             "type": file_info.get("type", "output")}
        )
        status, payload = self._request("GET", f"/view?{query}")
        if status != 200:
            raise ServerUnreachable(f"--server: GET /view for {file_info['filename']!r} answered HTTP {status}")
        folder = os.path.join(out_dir, os.path.normpath(file_info.get("subfolder", "")).lstrip("./\\"))
        folder = os.path.realpath(folder)
        if os.path.commonpath([os.path.realpath(out_dir), folder]) != os.path.realpath(out_dir):
            folder = os.path.realpath(out_dir)
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, os.path.basename(file_info["filename"]))
        handle, temp_path = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=os.path.splitext(target)[1])
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(payload)
            os.replace(temp_path, target)
        except BaseException:
            if os.path.exists(temp_path):
                os.unlink(temp_path)
            raise
        return target

    # -- run ---------------------------------------------------------------------------------
    def run(self, graph: dict, out_dir: Optional[str], progress: bool = True, timeout_s: float = 3600.0) -> ServerRun:
        """Submits, follows the websocket until the prompt ends, downloads outputs into out_dir."""
        import websocket

        ws_url = self.server_url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        try:
            socket = websocket.create_connection(ws_url, timeout=timeout_s)
        except (OSError, websocket.WebSocketException) as exc:
            raise ServerUnreachable(
                f"--server: could not open ComfyUI's websocket at {ws_url} ({exc}). Is the server running?"
            ) from exc
        bars = _ServerProgress(graph, enabled=progress)
        events: list[tuple[str, dict]] = []
        try:
            prompt_id, dropped_outputs = self.submit(graph)
            while True:
                message = socket.recv()
                if not isinstance(message, str):
                    continue  # binary preview images
                event = json.loads(message)
                kind, data = event.get("type"), event.get("data") or {}
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                if "prompt_id" in data:
                    events.append((kind, data))
                if kind == "executing" and data.get("node") is not None:
                    bars.start(str(data["node"]))
                elif kind == "progress":
                    bars.update(str(data.get("node")), int(data.get("value", 0)), int(data.get("max", 1)))
                elif kind == "execution_error":
                    bars.close()
                    raise RemoteNodeError(data)
                elif kind == "execution_interrupted":
                    bars.close()
                    raise RuntimeError(f"ComfyUI interrupted the run at node #{data.get('node_id')}.")
                elif kind == "execution_success" or (kind == "executing" and data.get("node") is None):
                    break
        finally:
            bars.close()
            socket.close()
        entry = self.finished_history(prompt_id)
        outputs = entry.get("outputs", {})
        run = ServerRun(prompt_id=prompt_id, outputs=outputs, events=events, node_errors=dropped_outputs)
        if out_dir is not None:
            for node_outputs in outputs.values():
                for key in OUTPUT_FILE_KEYS:
                    for file_info in node_outputs.get(key, []) or []:
                        if isinstance(file_info, dict) and file_info.get("type") == "output":
                            run.files.append(self.download(file_info, out_dir))
        return run


class RemoteNodeError(NodeExecutionError):
    """ComfyUI's execution_error for one node."""

    def __init__(self, data: dict):
        self.node_id = str(data.get("node_id"))
        self.node_type = data.get("node_type", "?")
        self.exception_type = data.get("exception_type", "Exception")
        self.exception_message = data.get("exception_message", "")
        self.traceback = data.get("traceback", [])
        Exception.__init__(
            self, f"Node #{self.node_id} {self.node_type} failed: {self.exception_type}: {self.exception_message}"
        )


class _ServerProgress:
    """A tqdm bar per node, driven by the websocket's executing/progress messages."""

    def __init__(self, graph: dict, enabled: bool):
        self.graph = graph
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def _label(self, node_id: str) -> str:
        node = self.graph.get(node_id, {})
        return f"#{node_id} {node.get('_meta', {}).get('title') or node.get('class_type', '?')}"

    def start(self, node_id: str) -> None:
        if self.enabled and node_id not in self.bars:
            from tqdm import tqdm

            self.bars[node_id] = tqdm(total=1, desc=self._label(node_id), unit="step", file=sys.stderr)

    def update(self, node_id: str, value: int, maximum: int) -> None:
        if not self.enabled:
            return
        self.start(node_id)
        bar = self.bars[node_id]
        bar.total = max(maximum, 1)
        bar.update(value - bar.n)  # update() honours tqdm's refresh interval

    def close(self) -> None:
        for bar in self.bars.values():
            if bar.n < bar.total and bar.total == 1:
                bar.n = 1
            bar.close()
        self.bars.clear()
