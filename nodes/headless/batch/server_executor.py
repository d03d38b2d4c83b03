"""ComfyUI-servers batch executor: jobs dispatched over the graph API to one or more servers.

Each server gets `per_server` dispatch slots (1 or 2: one running, one queued behind it, so the
server never idles between jobs and never holds more than that). A slot uploads the job's input
files once per server (POST /upload/image into input/talkinghead-batch/, named by content hash, so
the shared portrait goes up once), queues the graph (POST /prompt), follows its websocket, then
downloads the MP4 (GET /view) into the batch's staging folder and verifies it.

A server that goes away mid-job (connection refused, websocket closed) is probed; when it does not
answer it is retired for the rest of the batch and its in-flight jobs go back on the shared queue
for the other servers (bounded retries). A node error on the server (no face, corrupt audio) is the
job's failure, recorded, not retried. On Ctrl-C the slots interrupt their own prompts only
(POST /interrupt with the prompt id, POST /queue delete) and stop.

Only the URLs given are contacted; the existing ComfyClient does the HTTP (submit, history, view).
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Optional

from ..client import ComfyClient, RemoteNodeError, ServerUnreachable
from ..executor import GraphValidationError, format_validation_errors
from .jobs import attempt_graph, mp4_outputs, verify_output


class ServerDown(Exception):
    pass


def probe(url: str, timeout_s: float = 3.0) -> bool:
    """True when the server answers GET /system_stats."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/system_stats", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        return False


def upload_input(client: ComfyClient, name: str, source: str) -> None:
    """Uploads `source` as input/<name> (name = talkinghead-batch/<file>) with multipart POST /upload/image."""
    subfolder, _, filename = name.rpartition("/")
    boundary = "talkinghead-" + uuid.uuid4().hex
    with open(source, "rb") as handle:
        data = handle.read()
    parts = []
    for field_name, value in (("subfolder", subfolder), ("type", "input"), ("overwrite", "true")):
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"\r\n\r\n{value}\r\n".encode())
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    request = urllib.request.Request(client.server_url + "/upload/image", data=b"".join(parts), method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=client.timeout_s) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"upload of {os.path.basename(source)!r} refused: HTTP {exc.code}") from exc
    except (urllib.error.URLError, ConnectionError, OSError) as exc:
        raise ServerUnreachable(f"upload to {client.server_url} failed ({exc})") from exc
    if answer.get("name") != filename:
        raise RuntimeError(f"upload of {os.path.basename(source)!r}: the server stored it as {answer.get('name')!r}")


@dataclass
class _Server:
    url: str
    alive: bool = True
    uploaded: set = field(default_factory=set)
    upload_lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict = field(default_factory=dict)  # slot name -> prompt id in flight


@dataclass
class ServerExecutor:
    """Dispatches jobs to ComfyUI servers.

    Attributes:
        urls: server URLs (http://host:port).
        per_server: jobs in flight per server (1 or 2).
        retries: times a job whose server died is tried again on another.
        job_timeout_s: give up on a job (and interrupt it) after this long; None: no limit.
    """

    urls: list
    per_server: int = 1
    retries: int = 2
    job_timeout_s: Optional[float] = None
    name: str = "servers"
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list = field(default_factory=list)
    _servers: list = field(default_factory=list)

    def describe(self) -> str:
        return f"{len(self.urls)} ComfyUI server(s), {self.per_server} job(s) in flight each"

    def check_reachable(self) -> list[str]:
        """URLs that do not answer (the batch refuses to start when none does)."""
        return [url for url in self.urls if not probe(ComfyClient(url).server_url)]

    def shutdown(self, cancel: bool = False) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def run(self, items: list, batch) -> None:
        self._stop.clear()
        self._servers = [_Server(ComfyClient(url).server_url) for url in self.urls]
        for server in self._servers:
            if not probe(server.url):
                server.alive = False
                batch.log(f"server {server.url} does not answer; its share goes to the others")
        queue = collections.deque(items)
        state = {"remaining": len(items)}
        cond = threading.Condition()

        def finish(item, outcome):
            batch.finished(item, outcome)
            with cond:
                state["remaining"] -= 1
                cond.notify_all()

        def give_up_if_no_server():
            # caller holds cond
            if not any(server.alive for server in self._servers):
                while queue:
                    item = queue.popleft()
                    threading.Thread(target=finish, args=(item, {
                        "status": "lost", "verify": None, "timings": {}, "staged": None,
                        "error": "no ComfyUI server is left to run it"}), daemon=True).start()

        def slot(server: _Server, slot_name: str):
            client = ComfyClient(server.url, timeout_s=60.0)
            while not self._stop.is_set():
                with cond:
                    while not queue and state["remaining"] > 0 and not self._stop.is_set() and server.alive:
                        cond.wait(0.5)
                    if not queue or self._stop.is_set() or not server.alive:
                        return
                    item = queue.popleft()
                try:
                    outcome = self._run_one(server, slot_name, client, item, batch)
                except (ServerDown, ServerUnreachable, OSError, ConnectionError) as exc:
                    down = not probe(server.url)
                    reason = f"{server.url} {'stopped answering' if down else 'dropped the connection'} ({exc})"
                    with cond:
                        if down:
                            server.alive = False
                        if self._stop.is_set():
                            return
                        if item.attempts <= self.retries:
                            batch.retrying(item, reason)
                            queue.appendleft(item)
                            cond.notify_all()
                        else:
                            threading.Thread(target=finish, args=(item, {
                                "status": "lost", "verify": None, "timings": {}, "staged": None,
                                "error": f"{reason}; gave up after {item.attempts} attempts"}), daemon=True).start()
                        if down:
                            batch.worker_status(slot_name, "server down: retired")
                            give_up_if_no_server()
                            return
                    continue
                except Exception as exc:  # noqa: BLE001 - any other surprise fails this job alone
                    outcome = {"status": "failed", "verify": None, "timings": {}, "staged": None,
                               "error": f"{type(exc).__name__}: {exc}"}
                if outcome is None:  # stopped
                    return
                outcome["worker"] = slot_name
                finish(item, outcome)
                batch.worker_status(slot_name, "idle")

        for server in self._servers:
            for k in range(max(1, self.per_server)):
                name = f"{server.url.split('//', 1)[-1]}#{k + 1}"
                thread = threading.Thread(target=slot, args=(server, name), name=f"talkinghead-batch {name}",
                                          daemon=True)
                self._threads.append(thread)
                if server.alive:
                    batch.worker_status(name, "idle")
                thread.start()
        with cond:
            give_up_if_no_server()
        try:
            with cond:
                while state["remaining"] > 0:
                    cond.wait(0.5)
        finally:
            self.shutdown(cancel=state["remaining"] > 0)

    # -- one job on one server -------------------------------------------------------------------
    def _run_one(self, server: _Server, slot_name: str, client: ComfyClient, item, batch) -> Optional[dict]:
        import websocket

        job = item.job
        batch.started(item, worker=slot_name, pid=None)
        batch.worker_status(slot_name, f"{job.job_id}: uploading inputs")
        for name, source in job.files.items():
            with server.upload_lock:
                if name not in server.uploaded:
                    upload_input(client, name, source)
                    server.uploaded.add(name)
        graph = attempt_graph(job, f"a{item.attempts}-{uuid.uuid4().hex[:8]}")
        payload = batch.payload(item)
        started = time.perf_counter()
        ws_url = client.server_url.replace("http", "ws", 1) + f"/ws?clientId={client.client_id}"
        try:
            socket = websocket.create_connection(ws_url, timeout=10)
        except (OSError, websocket.WebSocketException) as exc:
            raise ServerDown(f"websocket: {exc}") from exc
        prompt_id = None
        try:
            try:
                prompt_id, dropped = client.submit(graph)
            except GraphValidationError as exc:
                return {"status": "failed", "verify": None, "timings": {}, "staged": None,
                        "error": "the server refused the workflow: " + format_validation_errors(exc.error, exc.node_errors, graph)}
            server.running[slot_name] = prompt_id
            if any(graph.get(node_id, {}).get("class_type") == "TalkingHeadMux" for node_id in dropped):
                return {"status": "failed", "verify": None, "timings": {}, "staged": None,
                        "error": "the server refused the Mux: " + format_validation_errors(
                            {"message": "ComfyUI refused part of the workflow"}, dropped, graph)}
            batch.worker_status(slot_name, f"{job.job_id}: queued as {prompt_id[:8]}")
            socket.settimeout(1.0)
            deadline = time.monotonic() + self.job_timeout_s if self.job_timeout_s else None
            while True:
                if self._stop.is_set():
                    self._interrupt(client, prompt_id)
                    return None
                if deadline is not None and time.monotonic() > deadline:
                    self._interrupt(client, prompt_id)
                    return {"status": "failed", "verify": None, "timings": {}, "staged": None,
                            "error": f"timed out after {self.job_timeout_s:g} s (--timeout); interrupted on the server"}
                try:
                    message = socket.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                except (websocket.WebSocketException, OSError) as exc:
                    raise ServerDown(f"websocket closed: {exc or type(exc).__name__}") from exc
                if not isinstance(message, str):
                    continue
                if message == "":
                    raise ServerDown("websocket closed")
                event = json.loads(message)
                kind, data = event.get("type"), event.get("data") or {}
                if data.get("prompt_id") != prompt_id:
                    continue
                if kind == "executing" and data.get("node") is not None:
                    node = graph.get(str(data["node"]), {})
                    title = node.get("_meta", {}).get("title") or node.get("class_type", "?")
                    batch.worker_status(slot_name, f"{job.job_id} #{data['node']} {title}")
                elif kind == "execution_error":
                    return {"status": "failed", "verify": None, "timings": {}, "staged": None,
                            "error": str(RemoteNodeError(data))}
                elif kind == "execution_interrupted":
                    raise ServerDown("the prompt was interrupted on the server")
                elif kind == "execution_success" or (kind == "executing" and data.get("node") is None):
                    break
        finally:
            server.running.pop(slot_name, None)
            socket.close()
        run_s = time.perf_counter() - started
        entry = client.finished_history(prompt_id)
        files = mp4_outputs(entry.get("outputs", {}))
        if not files:
            return {"status": "failed", "verify": None, "timings": {"run_s": round(run_s, 3)}, "staged": None,
                    "error": "the workflow ran on the server but its Mux wrote no MP4"}
        staging = batch.new_staging_dir(item)
        batch.worker_status(slot_name, f"{job.job_id}: downloading and verifying")
        staged = client.download(files[0], staging)
        verify_started = time.perf_counter()
        verify = verify_output(staged, payload.get("expect"), payload.get("trust_anchor_pem"), payload.get("verify_frames"))
        timings = {"run_s": round(run_s, 3), "verify_s": round(time.perf_counter() - verify_started, 3)}
        if not verify["ok"]:
            return {"status": "failed", "verify": verify, "timings": timings, "staged": None,
                    "error": "the output did not verify: " + "; ".join(verify["problems"])}
        return {"status": "ok", "verify": verify, "timings": timings, "staged": staged}

    @staticmethod
    def _interrupt(client: ComfyClient, prompt_id: str) -> None:
        """Stops only our prompt: removed from the queue if waiting, interrupted if running."""
        for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                client._request("POST", path, body)
            except Exception:  # noqa: BLE001 - best effort while stopping
                pass
