"""Errors a user can act on.

Every error raised for bad input names the input, says what was wrong with it and what to do, so
the same message reads well in a terminal, in ComfyUI's error dialog and in a `/prompt` response.
"""

from __future__ import annotations


class TalkingHeadError(Exception):
    """Base class of the errors this package raises on purpose."""


class InputError(TalkingHeadError, ValueError):
    """An input was missing or malformed.

    Args:
        input_name: the input as the user knows it (node input, CLI flag or function argument).
        problem: what is wrong with the value that was given.
        fix: what the user should do instead.
    """

    def __init__(self, input_name: str, problem: str, fix: str):
        self.input_name = input_name
        self.problem = problem
        self.fix = fix
        super().__init__(f"{input_name}: {problem}. {fix}")


class ToolError(TalkingHeadError, RuntimeError):
    """An external tool (ffmpeg, espeak-ng) failed; carries what it printed."""

    def __init__(self, tool: str, message: str, stderr_tail: str = ""):
        self.tool = tool
        self.stderr_tail = stderr_tail
        text = f"{tool}: {message}"
        if stderr_tail:
            text += f"\n--- last lines {tool} printed ---\n{stderr_tail}"
        super().__init__(text)
