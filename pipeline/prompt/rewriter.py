"""Optional first pass of the PromptRefiner: a local instruction-tuned language model rewrites the prompt.

The model is a `transformers` causal-LM folder on disk (config.json, weights, tokenizer files), e.g.
one under ComfyUI's `models/LLM`. It is loaded with `local_files_only=True`, so nothing is ever
downloaded, and decodes greedily with a fixed instruction, so the same prompt gives the same rewrite.
The rule pass (`prompt_refiner.refine_prompt`) runs after it, on its output: the content policy,
conflicts, inference and the token budget still apply.

Needs torch and transformers (`pip install 'talkinghead[llm]'`; ComfyUI always has both).
"""

from __future__ import annotations

import os
import threading
from typing import Optional

from ..core.errors import InputError

#: What the model is asked to do, the same every time.
INSTRUCTION = (
    "Rewrite the description below as one line of short, comma-separated visual descriptors for an image "
    "model making a video portrait of a person talking to the camera. Keep every detail the user gave, "
    "add nothing sexual, do not name real people, do not explain. Answer with the line only."
)
DEFAULT_MAX_NEW_TOKENS = 96


class LanguageModelRewriter:
    """prompt -> rewritten prompt with a local causal language model (greedy, deterministic).

    Args:
        model_dir: a transformers model folder (config.json + weights + tokenizer files).
        max_new_tokens: the longest rewrite, in model tokens.
        instruction: the fixed instruction (default INSTRUCTION).
        input_name: the input to name in errors (node input or CLI flag).
    """

    def __init__(self, model_dir: str, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 instruction: str = INSTRUCTION, input_name: str = "llm_model"):
        model_dir = os.path.abspath(os.fspath(model_dir))
        if not os.path.isfile(os.path.join(model_dir, "config.json")):
            raise InputError(input_name, f"{model_dir!r} is not a transformers model folder (no config.json)",
                             "Give a folder saved with save_pretrained: config.json, the weights "
                             "(*.safetensors) and the tokenizer files.")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise InputError(input_name, f"the language-model rewriter needs torch and transformers ({exc})",
                             "Install them: pip install 'talkinghead[llm]', or leave the model unset.") from exc
        self._torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(input_name, f"cannot load a causal language model from {model_dir!r} ({exc})",
                             "Give a folder with a causal-LM config, *.safetensors weights and tokenizer files; "
                             "nothing is downloaded.") from exc
        self.model.eval()
        self.model_dir = model_dir
        self.max_new_tokens = int(max_new_tokens)
        self.instruction = instruction
        self.name = f"language model {os.path.basename(model_dir.rstrip(os.sep))!r}"
        self._lock = threading.Lock()

    def context_length(self):
        """The most tokens the model reads (prompt + answer), when its config says."""
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def build_input(self, prompt: str) -> str:
        """The text the model continues: its chat template when it has one, else a plain layout."""
        template = getattr(self.tokenizer, "chat_template", None)
        if template:
            messages = [{"role": "system", "content": self.instruction}, {"role": "user", "content": prompt.strip()}]
            try:
                return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # templates without a system role
                messages = [{"role": "user", "content": f"{self.instruction}\n\n{prompt.strip()}"}]
                return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{self.instruction}\n\nDescription: {prompt.strip()}\nDescriptors:"

    def __call__(self, prompt: str) -> str:
        torch = self._torch
        encoded = self.tokenizer(self.build_input(prompt), return_tensors="pt")
        encoded.pop("token_type_ids", None)
        used = int(encoded["input_ids"].shape[1])
        context = self.context_length()
        new_tokens_allowed = self.max_new_tokens if context is None else min(self.max_new_tokens, context - used)
        if new_tokens_allowed < 8:
            raise InputError("prompt", f"too long for the language model's context ({used} of {context} tokens with "
                             "the instruction)", "Shorten the prompt, or set the language model to none.")
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        with self._lock, torch.no_grad():
            output = self.model.generate(**encoded, do_sample=False, num_beams=1, max_new_tokens=new_tokens_allowed,
                                         pad_token_id=pad_id)
        new_tokens = output[0, encoded["input_ids"].shape[1]:]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return first_line(text)


def first_line(text: str) -> str:
    """The first non-empty line of a model's answer, without a leading label or quotes."""
    for line in text.splitlines():
        line = line.strip().strip('"').strip()
        for label in ("Descriptors:", "Answer:", "Prompt:"):
            if line.startswith(label):
                line = line[len(label):].strip()
        if line:
            return line
    return ""


_loaded: dict = {}
_loaded_lock = threading.Lock()


def load_rewriter(model_dir: str, input_name: str = "llm_model") -> LanguageModelRewriter:
    """A rewriter for `model_dir`, loaded once per folder (reloaded when its config.json changes)."""
    path = os.path.abspath(os.fspath(model_dir))
    try:
        stamp: Optional[int] = os.stat(os.path.join(path, "config.json")).st_mtime_ns
    except OSError:
        stamp = None
    key = (path, stamp)
    with _loaded_lock:
        if key not in _loaded:
            _loaded.clear()  # one model in memory at a time
            _loaded[key] = LanguageModelRewriter(path, input_name=input_name)
        return _loaded[key]
