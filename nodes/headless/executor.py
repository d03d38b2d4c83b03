"""Runs an API-format ComfyUI graph in-process with the pack's own nodes, no ComfyUI needed.

Semantics follow ComfyUI's executor where a workflow file can tell the difference:
- a graph is `{node_id: {"class_type": str, "inputs": {name: value | [source_id, output_index]}}}`;
- only output nodes (`OUTPUT_NODE = True`) and what they depend on run, each node once, in
  dependency order;
- inputs are validated before anything runs (required inputs, link types, numeric ranges, combo
  values), and problems come back as `node_errors` shaped like ComfyUI's `/prompt` response;
- an output node's `{"ui": ..., "result": ...}` return gives its UI outputs, as in `/history`.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .. import comfy_env

Graph = dict[str, dict[str, Any]]


def pack_node_classes() -> dict[str, type]:
    from ..registry import NODE_CLASS_MAPPINGS

    return dict(NODE_CLASS_MAPPINGS)


@dataclass
class GraphResult:
    """What a finished graph produced.

    Attributes:
        outputs: node id -> UI outputs of each output node (same shape as ComfyUI's history outputs).
        results: node id -> the node's return tuple, for every node that ran.
        timings_s: node id -> seconds the node took.
    """

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, tuple] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)


class GraphValidationError(Exception):
    """The graph was refused before running; `error` and `node_errors` are shaped like ComfyUI's."""

    def __init__(self, error: dict, node_errors: dict):
        self.error = error
        self.node_errors = node_errors
        super().__init__(format_validation_errors(error, node_errors))


class NodeExecutionError(Exception):
    """A node raised while running; mirrors ComfyUI's `execution_error` message."""

    def __init__(self, node_id: str, node_type: str, exception: BaseException):
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = type(exception).__name__
        self.exception_message = str(exception)
        self.traceback = traceback.format_exception(type(exception), exception, exception.__traceback__)
        super().__init__(f"Node #{node_id} {node_type} failed: {self.exception_type}: {self.exception_message}")


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _input_specs(node_class: type) -> dict[str, tuple[str, Any, dict]]:
    """name -> (section, type_or_choices, options) for required and optional inputs."""
    specs = {}
    declared = node_class.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, spec in (declared.get(section) or {}).items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs[name] = (section, spec[0], options)
    return specs


def _error(kind: str, message: str, details: str, input_name: Optional[str] = None, **extra) -> dict:
    entry = {"type": kind, "message": message, "details": details, "extra_info": dict(extra)}
    if input_name is not None:
        entry["extra_info"]["input_name"] = input_name
    return entry


def _check_value(name: str, expected: Any, options: dict, value: Any) -> tuple[Any, Optional[dict]]:
    """Converts a widget value like ComfyUI does and checks its range; returns (value, error)."""
    if isinstance(expected, list):
        if value not in expected:
            shown = expected if len(expected) <= 20 else expected[:20] + ["..."]
            return value, _error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {shown}", name,
                                 input_config=shown, received_value=value)
        return value, None
    try:
        if expected == "INT":
            converted = int(value)
        elif expected == "FLOAT":
            converted = float(value)
            if not math.isfinite(converted):
                raise ValueError("not finite")
        elif expected == "STRING":
            converted = str(value)
        elif expected == "BOOLEAN":
            converted = bool(value)
        else:
            return value, _error("invalid_input_type", "Input is not a link",
                                 f"{name}: a {expected} input must be connected to another node's output", name)
    except (TypeError, ValueError):
        return value, _error("invalid_input_type", "Failed to convert an input value to a " + expected + " value",
                             f"{name}, {value!r}, could not be converted", name, received_value=value)
    if "min" in options and converted < options["min"]:
        return converted, _error("value_smaller_than_min", f"Value {converted} smaller than min of {options['min']}",
                                 f"{name}", name, received_value=converted)
    if "max" in options and converted > options["max"]:
        return converted, _error("value_bigger_than_max", f"Value {converted} bigger than max of {options['max']}",
                                 f"{name}", name, received_value=converted)
    return converted, None


def _output_nodes(graph: Graph, node_classes: dict[str, type]) -> list[str]:
    return [
        node_id for node_id, node in graph.items()
        if getattr(node_classes.get(node.get("class_type")), "OUTPUT_NODE", False)
    ]


def validate_graph(graph: Graph, node_classes: Optional[dict[str, type]] = None) -> dict[str, dict]:
    """Checks the graph; returns {node_id: converted inputs} or raises GraphValidationError."""
    node_classes = pack_node_classes() if node_classes is None else node_classes
    if not isinstance(graph, dict) or not graph:
        raise GraphValidationError(
            {"type": "invalid_prompt", "message": "The workflow holds no nodes",
             "details": "Expected an API-format graph: {node_id: {class_type, inputs}}"}, {})

    unknown = {}
    for node_id, node in graph.items():
        if not isinstance(node, dict) or "class_type" not in node:
            raise GraphValidationError(
                {"type": "invalid_prompt", "message": f"Node '{node_id}' has no class_type",
                 "details": "Is this an API-format workflow (File > Export (API) in ComfyUI)?"}, {})
        if node["class_type"] not in node_classes:
            unknown.setdefault(node["class_type"], []).append(node_id)
    if unknown:
        names = ", ".join(f"{name} (node {', '.join('#' + i for i in ids)})" for name, ids in sorted(unknown.items()))
        raise GraphValidationError(
            {"type": "missing_node_type",
             "message": f"Not available without ComfyUI: {names}",
             "details": "These nodes come from ComfyUI core or another node pack. Run the workflow in ComfyUI "
                        "(talkinghead run --server URL) or replace them with Talking Head nodes."}, {})

    outputs = _output_nodes(graph, node_classes)
    if not outputs:
        raise GraphValidationError(
            {"type": "prompt_no_outputs", "message": "Prompt has no outputs",
             "details": "Add an output node such as Mux MP4 (Talking Head)."}, {})

    node_errors: dict[str, dict] = {}
    converted: dict[str, dict] = {}
    for node_id, node in graph.items():
        node_class = node_classes[node["class_type"]]
        specs = _input_specs(node_class)
        inputs = node.get("inputs", {}) or {}
        errors = []
        values = {}
        for name, (section, expected, options) in specs.items():
            if name not in inputs:
                if section == "required":
                    errors.append(_error("required_input_missing", "Required input is missing", name, name))
                continue
            value = inputs[name]
            if _is_link(value):
                source_id, output_index = str(value[0]), value[1]
                source = graph.get(source_id)
                if source is None:
                    errors.append(_error("bad_linked_input", "Bad linked input, node does not exist",
                                         f"{name}: node #{source_id} is not in the graph", name))
                    continue
                source_types = node_classes[source["class_type"]].RETURN_TYPES
                if output_index >= len(source_types):
                    errors.append(_error("bad_linked_input", "Bad linked input, output does not exist",
                                         f"{name}: node #{source_id} has {len(source_types)} output(s)", name))
                    continue
                received = source_types[output_index]
                wanted = "COMBO" if isinstance(expected, list) else expected
                if received != wanted and "*" not in (received, wanted):
                    errors.append(_error("return_type_mismatch", "Return type mismatch between linked nodes",
                                         f"{name}, received_type({received}) mismatch input_type({wanted})", name,
                                         received_type=received))
                    continue
                values[name] = ("link", (source_id, output_index))
            else:
                checked, problem = _check_value(name, expected, options, value)
                if problem:
                    errors.append(problem)
                else:
                    values[name] = ("value", checked)
        if errors:
            node_errors[node_id] = {"errors": errors, "dependent_outputs": outputs, "class_type": node["class_type"]}
        converted[node_id] = values
    if node_errors:
        raise GraphValidationError(
            {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
             "details": ""}, node_errors)
    return converted


def _execution_order(graph: Graph, converted: dict[str, dict], outputs: list[str]) -> list[str]:
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(node_id: str) -> None:
        if state.get(node_id) == "done":
            return
        if state.get(node_id) == "visiting":
            raise GraphValidationError(
                {"type": "invalid_prompt", "message": "The graph has a cycle",
                 "details": f"Node #{node_id} depends on itself"}, {})
        state[node_id] = "visiting"
        for kind, payload in converted[node_id].values():
            if kind == "link":
                visit(payload[0])
        state[node_id] = "done"
        order.append(node_id)

    for node_id in sorted(outputs, key=_numeric_first):
        visit(node_id)
    return order


def _numeric_first(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def run_graph(
    graph: Graph,
    *,
    input_dir: str,
    output_dir: str,
    progress: bool = True,
    node_classes: Optional[dict[str, type]] = None,
    on_node_start: Optional[Callable[[str, str], None]] = None,
) -> GraphResult:
    """Validates and runs `graph` with the pack's nodes.

    Args:
        graph: API-format workflow.
        input_dir: folder loader nodes read from (ComfyUI's `input/`).
        output_dir: folder output nodes write into (ComfyUI's `output/`).
        progress: show a tqdm bar per node on stderr.
        on_node_start: called with (node_id, class_type) before each node runs.

    Raises:
        GraphValidationError: the graph was refused; nothing ran.
        NodeExecutionError: a node raised; nodes after it did not run.
    """
    node_classes = pack_node_classes() if node_classes is None else node_classes
    # Loader nodes list the input folder in INPUT_TYPES, so validation needs the folders too.
    with comfy_env.headless(comfy_env.HeadlessContext(input_dir=input_dir, output_dir=output_dir)):
        converted = validate_graph(graph, node_classes)
    order = _execution_order(graph, converted, _output_nodes(graph, node_classes))
    result = GraphResult()

    for node_id in order:
        class_type = graph[node_id]["class_type"]
        node_class = node_classes[class_type]
        kwargs = {}
        for name, (kind, payload) in converted[node_id].items():
            kwargs[name] = result.results[payload[0]][payload[1]] if kind == "link" else payload
        if on_node_start:
            on_node_start(node_id, class_type)
        title = graph[node_id].get("_meta", {}).get("title") or class_type
        bar = _NodeProgress(f"#{node_id} {title}", enabled=progress)
        context = comfy_env.HeadlessContext(input_dir=input_dir, output_dir=output_dir, progress_factory=bar.reporter)
        started = time.perf_counter()
        try:
            with comfy_env.headless(context):
                returned = getattr(node_class(), node_class.FUNCTION)(**kwargs)
        except Exception as exc:
            raise NodeExecutionError(node_id, class_type, exc) from exc
        finally:
            bar.close()
        result.timings_s[node_id] = time.perf_counter() - started
        if isinstance(returned, dict):
            if "ui" in returned and getattr(node_class, "OUTPUT_NODE", False):
                result.outputs[node_id] = _plain_ui(returned["ui"])
            returned = returned.get("result", ())
        result.results[node_id] = tuple(returned or ())
    return result


def _plain_ui(ui: dict) -> dict:
    """Tuples -> lists, as the UI outputs look after ComfyUI's JSON round trip."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in ui.items()}


class _NodeProgress:
    """One tqdm bar per node, created lazily when the node first reports progress."""

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled
        self._bar = None

    def reporter(self, total: int) -> comfy_env.ProgressReporter:
        return comfy_env.ProgressReporter(total, self._update)

    def _update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.label, unit="step", file=sys.stderr, leave=True)
        self._bar.total = total
        self._bar.update(done - self._bar.n)  # update() honours tqdm's refresh interval

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def format_validation_errors(error: dict, node_errors: dict, graph: Optional[Graph] = None) -> str:
    """Renders ComfyUI-shaped validation errors as readable lines (used for both run modes)."""
    lines = [error.get("message", "The workflow was refused")]
    if error.get("details"):
        lines.append("  " + error["details"])
    for node_id, entry in sorted(node_errors.items(), key=lambda item: _numeric_first(str(item[0]))):
        title = entry.get("class_type", "")
        if graph and node_id in graph:
            title = graph[node_id].get("_meta", {}).get("title") or title
        for problem in entry.get("errors", []):
            detail = f" ({problem['details']})" if problem.get("details") else ""
            lines.append(f"  node #{node_id} {title}: {problem.get('message', problem.get('type'))}{detail}")
    return "\n".join(lines)
