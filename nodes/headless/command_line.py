"""What the `talkinghead` commands share: the usage error (exit status 2) and reading an API-format
workflow file. Its own module so that `cli` and `batch.command` both import it, not each other."""

from __future__ import annotations

import json


class UsageError(Exception):
    """The command line or the workflow was refused before anything ran (exit status 2)."""


def load_api_workflow(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            graph = json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"WORKFLOW: no file at {path!r}")
    except json.JSONDecodeError as exc:
        raise UsageError(f"WORKFLOW: {path!r} is not valid JSON ({exc})")
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise UsageError(
            f"WORKFLOW: {path!r} is in the editor's UI format. Use the API format: the matching .api.json in "
            "workflows/api/, or File > Export (API) in ComfyUI."
        )
    if isinstance(graph, dict) and "prompt" in graph and isinstance(graph["prompt"], dict):
        graph = graph["prompt"]  # a saved /prompt request body
    if not isinstance(graph, dict):
        raise UsageError(f"WORKFLOW: {path!r} does not hold an API-format graph (a JSON object of nodes)")
    return graph
