"""A real, unmodified ComfyUI server for the integration and browser tests.

`ComfyServer` starts `ComfyUI/main.py` (from TALKINGHEAD_COMFYUI_DIR) with the test venv's Python on a
free 127.0.0.1 port, against a throw-away base directory whose custom_nodes/ holds a symlink to this
checkout, so the server loads the pack exactly as a user's ComfyUI would. It always stops what it
started (terminate, then kill, the whole process group). The server log is kept as a test artifact.

Helpers speak the documented HTTP + websocket API only: POST /prompt, GET /history/{id}, GET /view,
GET /object_info, and /ws?clientId=ID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_DIR = REPO_ROOT / "tests" / "artifacts"
PACK_FOLDER = "comfyui-talkinghead"  # the name of the symlink under custom_nodes/
ENV_VAR = "TALKINGHEAD_COMFYUI_DIR"


def comfyui_dir_or_reason() -> tuple[Path | None, str]:
    """The ComfyUI tree to run, or (None, why the server tests must be skipped)."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None, (f"{ENV_VAR} is not set: the real-ComfyUI tests need it "
                      "(`make test` sets it up and points it at .venv-test/comfyui/ComfyUI)")
    path = Path(value)
    if not (path / "main.py").is_file():
        return None, f"{ENV_VAR}={value} has no main.py: run `tests/env/bootstrap.sh setup-test`"
    return path, ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(RuntimeError):
    pass


@dataclass
class PromptRun:
    """What one run of a graph through the server produced."""

    prompt_id: str
    status: str  # "success" or "error" (from the final websocket event)
    history: dict  # the /history/{prompt_id} entry ({"prompt", "outputs", "status", "meta"})
    events: list[dict] = field(default_factory=list)  # websocket JSON messages for this prompt

    def events_of(self, type_: str) -> list[dict]:
        return [e["data"] for e in self.events if e.get("type") == type_]

    @property
    def error(self) -> dict | None:
        errs = self.events_of("execution_error")
        return errs[0] if errs else None

    @property
    def outputs(self) -> dict:
        return self.history.get("outputs", {})


class ComfyServer:
    def __init__(self, comfyui_dir: Path, base_dir: Path, *, python: str | None = None,
                 log_path: Path | None = None, port: int | None = None,
                 extra_args: list[str] | None = None):
        self.comfyui_dir = Path(comfyui_dir)
        self.base_dir = Path(base_dir)
        self.python = python or sys.executable
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path or ARTIFACTS_DIR / "comfyui-server.log")
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self.start_seconds: float | None = None

    # -- folders -------------------------------------------------------------------------------
    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    def prepare_base_dir(self) -> None:
        for sub in ("custom_nodes", "input", "output", "models", "temp",
                    "user/default"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        link = self.base_dir / "custom_nodes" / PACK_FOLDER
        if not link.exists():
            link.symlink_to(REPO_ROOT, target_is_directory=True)
        settings = self.base_dir / "user" / "default" / "comfy.settings.json"
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))

    # -- life cycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> "ComfyServer":
        self.prepare_base_dir()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base_dir), "--database-url", "sqlite:///:memory:",
               "--disable-auto-launch", "--disable-api-nodes", *self.extra_args]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("NUMBA_CACHE_DIR", str(self.base_dir / "numba-cache"))
        # Keep the server offline and quiet about telemetry / model downloads.
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=self.comfyui_dir, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"ComfyUI exited with code {self.proc.returncode} before it was "
                                  f"ready.\n--- server log tail ({self.log_path}) ---\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError) as e:
                last = repr(e)
            time.sleep(0.25)
        raise ServerError(f"ComfyUI did not answer /system_stats within {timeout:.0f} s "
                          f"(last error: {last}).\n--- server log tail ({self.log_path}) ---\n"
                          f"{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                pgid = os.getpgid(proc.pid)
            except ProcessLookupError:
                pgid = None
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    if pgid is not None:
                        os.killpg(pgid, sig)
                    else:
                        proc.send_signal(sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None:
            # Anything left in the group (children of the server) goes too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- HTTP ------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict | None = None,
                timeout: float = 60) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str, timeout: float = 60):
        status, raw = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ServerError(f"GET {path} -> HTTP {status}: {raw[:500]!r}")
        return json.loads(raw)

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def post_prompt(self, graph: dict, client_id: str | None = None) -> tuple[int, dict]:
        body = {"prompt": graph, "client_id": client_id or uuid.uuid4().hex}
        status, raw = self.request("POST", "/prompt", body)
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"raw": raw.decode(errors="replace")}
        return status, payload

    def history(self, prompt_id: str) -> dict | None:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id)

    def wait_history(self, prompt_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            time.sleep(0.2)
        raise ServerError(f"prompt {prompt_id} had no history entry after {timeout:.0f} s.\n"
                          f"--- server log tail ---\n{self.log_tail()}")

    def view(self, filename: str, subfolder: str = "", type_: str = "output") -> bytes:
        q = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type_})
        status, raw = self.request("GET", "/view?" + q, timeout=120)
        if status != 200:
            raise ServerError(f"/view {filename!r} ({subfolder!r}, {type_}) -> HTTP {status}")
        return raw

    def download(self, file_ref: dict, dest_dir: Path) -> Path:
        """Fetch {"filename", "subfolder", "type"} through /view into dest_dir."""
        data = self.view(file_ref["filename"], file_ref.get("subfolder", ""),
                         file_ref.get("type", "output"))
        dest_dir.mkdir(parents=True, exist_ok=True)
        path = dest_dir / Path(file_ref["filename"]).name
        path.write_bytes(data)
        return path

    # -- websocket -------------------------------------------------------------------------------
    def run_prompt(self, graph: dict, timeout: float = 300) -> PromptRun:
        """Queue `graph`, follow the websocket until it succeeds or fails, return what happened.

        Raises ServerError (with node_errors) when the graph does not validate."""
        import websocket  # websocket-client

        client_id = uuid.uuid4().hex
        ws = websocket.create_connection(f"ws://127.0.0.1:{self.port}/ws?clientId={client_id}",
                                         timeout=timeout)
        events: list[dict] = []
        try:
            status, payload = self.post_prompt(graph, client_id)
            if status != 200 or "prompt_id" not in payload:
                raise ServerError(f"/prompt refused the graph: HTTP {status}: "
                                  f"{json.dumps(payload, indent=1)[:4000]}")
            prompt_id = payload["prompt_id"]
            deadline = time.monotonic() + timeout
            final = None
            while final is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServerError(f"prompt {prompt_id} did not finish within {timeout:.0f} s; "
                                      f"events: {[e.get('type') for e in events]}\n"
                                      f"--- server log tail ---\n{self.log_tail()}")
                ws.settimeout(left)
                try:
                    msg = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue  # the deadline check above reports it
                except websocket.WebSocketConnectionClosedException as e:
                    raise ServerError(f"the websocket closed while prompt {prompt_id} ran: {e}\n"
                                      f"--- server log tail ---\n{self.log_tail()}") from e
                if isinstance(msg, bytes):  # binary previews
                    continue
                event = json.loads(msg)
                data = event.get("data") or {}
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                if event.get("type") in ("status", "crystools.monitor"):
                    continue
                events.append(event)
                if event.get("type") == "execution_success":
                    final = "success"
                elif event.get("type") in ("execution_error", "execution_interrupted"):
                    final = "error"
        finally:
            ws.close()
        history = self.wait_history(prompt_id, timeout=60)
        return PromptRun(prompt_id=prompt_id, status=final, history=history, events=events)


# -- graph helpers used by the tests -------------------------------------------------------------

def mux_outputs(outputs: dict) -> list[tuple[str, dict]]:
    """(node_id, ui dict) for every history output that carries a talkinghead_mux result."""
    return [(nid, ui) for nid, ui in outputs.items()
            if isinstance(ui, dict) and ui.get("talkinghead_mux")]


def nodes_of_type(graph: dict, class_type: str) -> list[str]:
    return [nid for nid, node in graph.items() if node.get("class_type") == class_type]


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
