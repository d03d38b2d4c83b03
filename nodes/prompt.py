"""PromptRefiner node: a loose prompt -> RefinedPrompt (positive, negative, report of every change)."""

from __future__ import annotations

import logging
import os

from ..pipeline.core.errors import InputError
from ..pipeline.prompt.refiner import DEFAULT_TOKEN_BUDGET, MIN_TOKEN_BUDGET, NO_PRESET, refine_prompt
from ..pipeline.prompt.rules import load_rules
from . import comfy_env
from .sampler import REFINED_PROMPT

logger = logging.getLogger("talkinghead")

#: ComfyUI model folder kind for local language models (models/LLM).
LLM_KIND = "LLM"
NO_MODEL = "none"
MAX_TOKEN_BUDGET = 1024


def _register_llm_folder() -> None:
    """Makes ComfyUI know models/LLM (other packs use the same name) so its models can be listed."""
    try:
        import folder_paths
    except ImportError:
        return
    if LLM_KIND not in getattr(folder_paths, "folder_names_and_paths", {}):
        try:
            folder_paths.add_model_folder_path(LLM_KIND, os.path.join(folder_paths.models_dir, LLM_KIND))
        except Exception as exc:  # an unexpected folder_paths: listing just stays empty
            logger.debug("PromptRefiner: could not register models/%s: %s", LLM_KIND, exc)


_register_llm_folder()


def _preset_names() -> list[str]:
    try:
        rules = load_rules()
    except InputError as exc:  # a broken user rules file: list the shipped presets, report it when run
        logger.warning("PromptRefiner: %s", exc)
        rules = load_rules(include_user=False)
    return [NO_PRESET] + rules.preset_names()


def resolve_rules_file(name: str) -> str:
    """A rules file named relative to the input folder or the config folder; never a path outside them."""
    from ..pipeline.core.config_dir import default_config_dir

    roots = [r for r in (comfy_env.input_directory_if_known(), default_config_dir()) if r]
    if not name.lower().endswith(".toml"):
        raise InputError("rules_file", f"{name!r} is not a .toml file", "Give the name of a TOML rules file.")
    for root in roots:
        real_root = os.path.realpath(root)
        candidate = os.path.realpath(os.path.join(real_root, name))
        if os.path.commonpath([real_root, candidate]) == real_root and os.path.isfile(candidate):
            return candidate
    raise InputError("rules_file", f"{name!r} was not found in {' or '.join(roots)}",
                     "Put the TOML file in the input folder or the Talking Head config folder and give its name "
                     "relative to it.")


class TalkingHeadPromptRefiner:
    CATEGORY = "TalkingHead/prompt"
    DESCRIPTION = (
        "Turns a loose prompt into a dense, consistent one for a talking-head shot: normalises wording and "
        "synonyms, resolves contradictions (your words beat inferred ones, later beats earlier), infers the "
        "framing, lighting, lens, background and quality you left unsaid, adds negatives for known failure "
        "modes, and fits CLIP's token budget without cutting your words. Refuses sexual content and "
        "impersonation of real people. Rules live in an extensible data file."
    )
    RETURN_TYPES = (REFINED_PROMPT, "STRING", "STRING", "STRING")
    RETURN_NAMES = ("refined_prompt", "positive", "negative", "report")
    OUTPUT_TOOLTIPS = (
        "The refined prompt for TemporalSampler engines (positive, negative, report, token counts).",
        "The positive prompt, for CLIP Text Encode or any STRING input.",
        "The negative prompt: yours first, then the failure-mode negatives.",
        "Every change and why (removed, added, rewritten, moved, skipped), the token counts and warnings.",
    )
    OUTPUT_NODE = True
    FUNCTION = "refine"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "prompt": ("STRING", {
                    "multiline": True, "default": "",
                    "tooltip": "Your description of the shot, any length or language. Empty: only inferred detail. "
                    "Phrases starting with 'no ...' move to the negative prompt."}),
                "negative": ("STRING", {
                    "multiline": True, "default": "",
                    "tooltip": "Your negative prompt (optional); it is kept first, before the default negatives."}),
                "preset": (_preset_names(), {
                    "default": NO_PRESET,
                    "tooltip": "Look that steers the inferred lighting, lens, background and style: studio, office, "
                    "outdoor, cinematic (more in your rules file). none: neutral defaults."}),
                "token_budget": ("INT", {
                    "default": DEFAULT_TOKEN_BUDGET, "min": MIN_TOKEN_BUDGET, "max": MAX_TOKEN_BUDGET, "step": 1,
                    "tooltip": "CLIP tokens each prompt may take, start and end tokens included (77 = CLIP's "
                    "context; 75 for text). Inferred detail is dropped to fit; your own words never are."}),
                "infer_detail": ("BOOLEAN", {
                    "default": True, "label_on": "infer unsaid detail", "label_off": "only my words",
                    "tooltip": "Add framing (head and shoulders, eye level), gaze, lighting, lens, depth of field, "
                    "background and quality priors where your prompt says nothing of them."}),
            },
            "optional": {
                "rules_file": ("STRING", {
                    "default": "",
                    "tooltip": "Extra TOML rules merged over the shipped ones (vocabulary, synonyms, conflicts, "
                    "presets, negatives, policy terms): a file name relative to the input folder or the "
                    "Talking Head config folder. Empty: shipped rules plus your config folder's prompt_rules.toml."}),
                "llm_model": ([NO_MODEL] + comfy_env.list_models(LLM_KIND), {
                    "default": NO_MODEL,
                    "tooltip": "Optional local instruction-tuned language model (a transformers folder in "
                    "models/LLM) that rewrites the prompt first; the rules run after it. Greedy, offline. "
                    "none: rules only."}),
            },
        }

    def refine(self, prompt, negative, preset, token_budget, infer_detail, rules_file="", llm_model=NO_MODEL):
        rules = load_rules(resolve_rules_file(rules_file.strip()) if rules_file and rules_file.strip() else None)
        rewriter = None
        if llm_model not in (None, "", NO_MODEL):
            from ..pipeline.prompt.rewriter import load_rewriter

            rewriter = load_rewriter(comfy_env.resolve_model(LLM_KIND, llm_model, "llm_model"), "llm_model")
        refined = refine_prompt(prompt, negative, preset=preset, token_budget=int(token_budget),
                                infer_detail=bool(infer_detail), rules=rules, rewriter=rewriter)
        for warning in refined.warnings:
            logger.warning("PromptRefiner: %s", warning)
        report = refined.report_text()
        ui = {
            "text": [report],
            "talkinghead_prompt": [{"positive": refined.positive, "negative": refined.negative,
                                    "positive_tokens": refined.positive_tokens,
                                    "negative_tokens": refined.negative_tokens, "token_budget": refined.token_budget,
                                    "fits": refined.fits, "warnings": refined.warnings}],
        }
        return {"ui": ui, "result": (refined, refined.positive, refined.negative, report)}
