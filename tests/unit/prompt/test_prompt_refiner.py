"""PromptRefiner: the table of prompt cases, conflicts, presets, negatives, the token budget, the
content policy, user rules files, determinism, CLIP tokenizer parity, the rewriter plumbing, the
node and the `talkinghead prompt` command."""

from __future__ import annotations

import json
import os
import random
import re
import string
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from talkinghead.pipeline.core.errors import InputError
from talkinghead.pipeline.prompt import clip_tokens
from talkinghead.pipeline.prompt.refiner import (
                                                 PromptPolicyError,
                                                 RefinedPrompt,
                                                 refine_prompt,
                                                 )
from talkinghead.pipeline.prompt.rules import RULES_ENV_VAR, SHIPPED_RULES_PATH, load_rules

REPO = Path(__file__).resolve().parents[3]

INFERRED = ("head and shoulders portrait, looking at the camera, eye level, soft even lighting, 85mm lens, "
            "shallow depth of field, plain neutral background, photorealistic, sharp focus on the eyes, "
            "natural skin texture, high detail")
DEFAULT_NEGATIVES = ("asymmetric face, deformed mouth, extra teeth, malformed teeth, blurred eyes, cross-eyed, "
                     "distorted face, flicker, text, watermark, blurry, lowres, jpeg artifacts")
NO_INFER = {"infer_detail": False}


@pytest.fixture(autouse=True)
def no_user_rules(monkeypatch, tmp_path):
    """Each test sees the shipped rules only, unless it adds files itself."""
    monkeypatch.setenv("TALKINGHEAD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv(RULES_ENV_VAR, raising=False)


def entries(refined: RefinedPrompt) -> list[tuple[str, str, str]]:
    return [(e.action, e.what, e.to) for e in refined.report]


def has_entry(refined: RefinedPrompt, action: str, what: str, to=None, why=None, prompt=None) -> bool:
    return any(e.action == action and e.what == what and (to is None or e.to == to)
               and (why is None or why in e.why) and (prompt is None or e.prompt == prompt) for e in refined.report)


# ---- the table ---------------------------------------------------------------------------------
# (id, kwargs, expected positive, expected negative, expected report entries (action, what[, to]),
#  expected warning fragments)

D = DEFAULT_NEGATIVES
CASES = [
    # empty input
    ("empty", dict(prompt=""), INFERRED, D, [("added", "head and shoulders portrait"), ("added", "asymmetric face")],
     ["the prompt is empty"]),
    ("whitespace only", dict(prompt="   \t\n  "), INFERRED, D, [("added", "high detail")], ["the prompt is empty"]),
    ("empty, no inference", dict(prompt="", **NO_INFER), "", D, [], ["with inferred detail off, the positive prompt is empty"]),
    ("None", dict(prompt=None, **NO_INFER), "", D, [], ["the prompt is empty"]),
    ("separators only", dict(prompt=",, ;; |"), INFERRED, D, [], ["no words of the prompt are left"]),
    # normalisation
    ("casing", dict(prompt="A Woman Talking", **NO_INFER), "a woman talking", D,
     [("rewritten", "A Woman Talking", "a woman talking")], []),
    ("spacing", dict(prompt="a   woman\ttalking", **NO_INFER), "a woman talking", D,
     [("rewritten", "a   woman\ttalking", "a woman talking")], []),
    ("punctuation", dict(prompt='"a woman talking!!!"', **NO_INFER), "a woman talking", D,
     [("rewritten", '"a woman talking!!!"', "a woman talking")], []),
    ("sentences become phrases", dict(prompt="A woman talks. She smiles!", **NO_INFER), "a woman talks, she smiles", D,
     [("rewritten", "A woman talks", "a woman talks"), ("rewritten", "She smiles", "she smiles")], []),
    ("duplicates", dict(prompt="woman, Woman, woman", **NO_INFER), "woman", D,
     [("rewritten", "Woman", "woman"), ("removed", "woman")], []),
    ("synonym inside a phrase", dict(prompt="closeup of a woman", **NO_INFER), "close-up of a woman", D,
     [("rewritten", "closeup", "close-up")], []),
    ("synonyms collapse to one", dict(prompt="closeup, close up", **NO_INFER), "close-up", D,
     [("rewritten", "closeup", "close-up"), ("rewritten", "close up", "close-up"), ("removed", "close-up")], []),
    ("multi-word synonyms", dict(prompt="headshot, grinning man", **NO_INFER), "head and shoulders, smiling man", D,
     [("rewritten", "headshot", "head and shoulders"), ("rewritten", "grinning", "smiling")], []),
    ("weights kept", dict(prompt="(smiling:1.2), ( red hair : 1.1 )", **NO_INFER), "(smiling:1.2), (red hair:1.1)", D,
     [("rewritten", "( red hair : 1.1 )", "(red hair:1.1)")], []),
    ("no split inside brackets", dict(prompt="woman (red hair, freckles)", **NO_INFER), "woman (red hair, freckles)", D,
     [], []),
    ("decimals are not sentence ends; lens said", dict(prompt="85mm f/1.8 lens"),
     "85mm f/1.8 lens, head and shoulders portrait, looking at the camera, eye level, soft even lighting, "
     "shallow depth of field, plain neutral background, photorealistic, sharp focus on the eyes, natural skin "
     "texture, high detail", D, [], []),
    ("curly apostrophe", dict(prompt="woman’s smile", **NO_INFER), "woman's smile", D,
     [("rewritten", "woman’s smile", "woman's smile")], []),
    # negation moves to the negative prompt
    ("no X", dict(prompt="a woman, no glasses", **NO_INFER), "a woman", "glasses, " + D,
     [("moved", "no glasses", "glasses")], []),
    ("without / not", dict(prompt="without makeup, not smiling", **NO_INFER), "", "makeup, smiling, " + D,
     [("moved", "without makeup", "makeup"), ("moved", "not smiling", "smiling")], ["no words of the prompt"]),
    ("moved duplicate of your negative", dict(prompt="woman, no hat", negative="hat, blurry", **NO_INFER), "woman",
     "hat, blurry, asymmetric face, deformed mouth, extra teeth, malformed teeth, blurred eyes, cross-eyed, "
     "distorted face, flicker, text, watermark, lowres, jpeg artifacts",
     [("moved", "no hat", "hat"), ("removed", "hat")], []),
    # conflicts: later beats earlier
    ("night vs daylight", dict(prompt="night, daylight", **NO_INFER), "daylight", D, [("removed", "night", "")], []),
    ("cut inside a phrase leaves no dangling preposition", dict(prompt="frowning at night in daylight", **NO_INFER),
     "frowning in daylight", D, [("removed", "night", "frowning in daylight")], []),
    ("smiling vs frowning", dict(prompt="smiling, frowning", **NO_INFER), "frowning", D, [("removed", "smiling", "")], []),
    ("close-up vs full body", dict(prompt="close-up, full body", **NO_INFER), "full body", D,
     [("removed", "close-up", "")], []),
    ("two hair colours", dict(prompt="red hair, blonde hair", **NO_INFER), "blonde hair", D,
     [("removed", "red hair", "")], []),
    ("hair colour by another word", dict(prompt="a redhead, black hair", **NO_INFER), "black hair", D,
     [("removed", "redhead", "")], []),
    ("conflict inside one phrase", dict(prompt="smiling and frowning", **NO_INFER), "frowning", D,
     [("removed", "smiling", "frowning")], []),
    ("words cut out of a phrase", dict(prompt="a smiling woman with red hair and freckles, frowning, black hair", **NO_INFER),
     "a woman with freckles, frowning, black hair", D,
     [("removed", "smiling", "a woman with freckles"), ("removed", "red hair", "a woman with freckles")], []),
    ("eye colours", dict(prompt="blue eyes, green eyes", **NO_INFER), "green eyes", D, [("removed", "blue eyes")], []),
    ("camera angles", dict(prompt="low angle, eye level", **NO_INFER), "eye level", D, [("removed", "low angle")], []),
    ("gaze, via a synonym", dict(prompt="looking away, looking at camera", **NO_INFER), "looking at the camera", D,
     [("rewritten", "looking at camera", "looking at the camera"), ("removed", "looking away")], []),
    ("the last word wins", dict(prompt="smiling, frowning, smiling", **NO_INFER), "smiling", D,
     [("removed", "frowning"), ("removed", "smiling")], []),
    # emoji
    ("emoji synonym", dict(prompt="woman 😀", **NO_INFER), "woman smiling", D, [("rewritten", "😀", "smiling")], []),
    ("emoji conflict", dict(prompt="😀 🙁", **NO_INFER), "frowning", D,
     [("rewritten", "😀", "smiling"), ("rewritten", "🙁", "frowning"), ("removed", "smiling", "frowning")], []),
    ("emoji only", dict(prompt="😀", **NO_INFER), "smiling", D, [("rewritten", "😀", "smiling")], []),
    # inference: your words beat inferred ones
    ("preset daylight vs your night", dict(prompt="a man at night", preset="outdoor"),
     "a man at night, head and shoulders portrait, looking at the camera, eye level, 85mm lens, shallow depth of field, "
     "blurred green park background, photorealistic, sharp focus on the eyes, natural skin texture, high detail",
     "overexposed sky, " + D, [("skipped", "natural daylight"), ("added", "overexposed sky")], []),
    ("anime vs photorealistic", dict(prompt="anime girl"),
     "anime girl, head and shoulders portrait, looking at the camera, eye level, soft even lighting, 85mm lens, "
     "shallow depth of field, plain neutral background, sharp focus on the eyes, natural skin texture, high detail",
     D, [("skipped", "photorealistic")], []),
    ("lighting said, not inferred", dict(prompt="neon lighting"),
     "neon lighting, head and shoulders portrait, looking at the camera, eye level, 85mm lens, shallow depth of field, "
     "plain neutral background, photorealistic, sharp focus on the eyes, natural skin texture, high detail", D, [], []),
    # presets
    ("studio", dict(prompt="", preset="studio"),
     "head and shoulders portrait, looking at the camera, eye level, soft studio key light, 85mm lens, shallow depth "
     "of field, plain grey studio backdrop, photorealistic, sharp focus on the eyes, natural skin texture, high detail",
     "harsh shadows, " + D, [("added", "soft studio key light"), ("added", "harsh shadows")], ["the prompt is empty"]),
    ("office", dict(prompt="a man", preset="office"),
     "a man, head and shoulders portrait, looking at the camera, eye level, soft window light, 50mm lens, shallow "
     "depth of field, modern office background, photorealistic, sharp focus on the eyes, natural skin texture, high detail",
     "cluttered background, " + D, [("added", "modern office background")], []),
    ("cinematic", dict(prompt="a man", preset="cinematic"),
     "a man, head and shoulders portrait, looking at the camera, eye level, cinematic lighting, anamorphic 50mm lens, "
     "shallow depth of field, moody interior background, cinematic color grading, subtle film grain, photorealistic, "
     "sharp focus on the eyes, natural skin texture, high detail",
     "flat lighting, " + D, [("added", "cinematic color grading"), ("added", "flat lighting")], []),
    ("preset without inference", dict(prompt="a woman", preset="office", **NO_INFER), "a woman",
     "cluttered background, " + D, [("added", "cluttered background")], []),
    ("preset name in any case", dict(prompt="a woman", preset="Studio", **NO_INFER), "a woman", "harsh shadows, " + D,
     [], []),
    # negatives
    ("your negatives first, normalised", dict(prompt="woman", negative="Ugly,  ugly, bad hands", **NO_INFER), "woman",
     "ugly, bad hands, " + D, [("rewritten", "Ugly", "ugly"), ("removed", "ugly")], []),
    ("asked-for blur is not negated", dict(prompt="woman, blurred background", **NO_INFER), "woman, blurred background",
     D.replace("blurry, ", ""), [("skipped", "blurry")], []),
    ("asked-for captions keep text", dict(prompt="woman, captions at the bottom", **NO_INFER),
     "woman, captions at the bottom", D.replace("text, ", ""), [("skipped", "text")], []),
    ("a default you already gave", dict(prompt="woman", negative="watermark", **NO_INFER), "woman",
     "watermark, " + D.replace("watermark, ", ""), [], []),
    ("in both prompts", dict(prompt="woman, hat", negative="hat", **NO_INFER), "woman, hat", "hat, " + D, [],
     ["in both the positive and the negative prompt: 'hat'"]),
    # budget
    ("small budget drops inferred detail, lowest priority first", dict(prompt="a woman talking", token_budget=20),
     "a woman talking, head and shoulders portrait, looking at the camera, eye level",
     "asymmetric face, deformed mouth, extra teeth, malformed teeth, blurred eyes",
     [("removed", "high detail"), ("removed", "soft even lighting"), ("removed", "cross-eyed")], []),
    # policy: allowed
    ("negated nudity is allowed", dict(prompt="fully clothed woman, no nudity", **NO_INFER), "fully clothed woman",
     "nudity, " + D, [("moved", "no nudity", "nudity")], []),
    ("policy words in your negative are fine", dict(prompt="woman", negative="nude, nsfw", **NO_INFER), "woman",
     "nude, nsfw, " + D, [], []),
    ("word boundaries (Essex)", dict(prompt="a woman from Essex", **NO_INFER), "a woman from essex", D, [], []),
    # other languages
    ("French", dict(prompt="une femme souriante, cheveux roux", **NO_INFER), "une femme souriante, cheveux roux", D, [],
     []),
    ("Japanese", dict(prompt="東京の夜景、笑顔の女性", **NO_INFER), "東京の夜景, 笑顔の女性", D, [],
     ["10 letters outside the Latin alphabet"]),
]


@pytest.mark.parametrize("case_id, kwargs, positive, negative, report, warnings", CASES, ids=[c[0] for c in CASES])
def test_prompt_case(case_id, kwargs, positive, negative, report, warnings):
    refined = refine_prompt(**kwargs)
    assert refined.positive == positive
    assert refined.negative == negative
    for expected in report:
        assert has_entry(refined, *expected), f"{expected} not in {entries(refined)}"
    assert len(refined.warnings) == len(warnings), refined.warnings
    for fragment, warning in zip(warnings, refined.warnings):
        assert fragment in warning
    assert refined.positive_tokens == clip_tokens.count_tokens(refined.positive)
    assert refined.negative_tokens == clip_tokens.count_tokens(refined.negative)
    assert refined.fits


def test_the_table_is_big_enough():
    assert len(CASES) >= 40


REFUSED = [
    ("a nude woman", "sexual content", ["nude"]),
    ("NSFW portrait", "sexual content", ["nsfw"]),
    ("sexy schoolgirl", "sexual content involving minors", ["schoolgirl", "sexy"]),
    ("a 15-year-old girl in lingerie", "sexual content involving minors", ["15-year-old", "lingerie"]),
    ("make it look like Joe Biden really said this", "impersonation of a real person", ["make it look like", "Joe Biden"]),
    ("authentic footage of the president announcing a war", "impersonation of a real person",
     ["authentic footage", "president"]),
    ("a deepfake of my boss", "deepfake of a real person", ["deepfake"]),
]


@pytest.mark.parametrize("prompt, rule, matched", REFUSED, ids=[r[1] + ": " + r[0] for r in REFUSED])
def test_policy_refuses_with_a_clear_message(prompt, rule, matched):
    with pytest.raises(PromptPolicyError) as caught:
        refine_prompt(prompt)
    error = caught.value
    assert error.input_name == "prompt" and error.rule_name == rule and error.matched == matched
    text = str(error)
    assert text.startswith(f"prompt: refused by the content policy: {rule}")
    assert "Rephrase the prompt" in text


# ---- conflicts, inference, budget in detail ----------------------------------------------------


def test_conflict_report_says_what_was_dropped_and_why():
    refined = refine_prompt("a smiling woman, frowning", infer_detail=False)
    (entry,) = refined.entries("removed", "conflict")
    assert (entry.what, entry.to, entry.source) == ("smiling", "a woman", "user")
    assert entry.why == "contradicts 'frowning' (expression): later words beat earlier ones"
    skipped = refine_prompt("at night", preset="outdoor").entries("skipped", "infer")[0]
    assert skipped.what == "natural daylight" and skipped.source == "preset"
    assert skipped.why == "contradicts your 'night' (time of day): your words beat inferred ones"


def test_inference_adds_only_unsaid_categories_and_says_why():
    refined = refine_prompt("medium shot of a man looking away, warm lamp light, office background, 4k")
    added = [e.what for e in refined.entries("added", "infer")]
    assert added == ["eye level", "85mm lens", "shallow depth of field"]
    assert refined.positive == ("medium shot of a man looking away, warm lamp light, office background, 4k, eye level, "
                                "85mm lens, shallow depth of field")
    why = refined.entries("added", "infer")[0].why
    assert why.startswith("camera angle unsaid: ")


def test_budget_never_drops_your_words_and_says_so():
    words = ["woman", "speaking", "calmly", "about", "the", "weather", "in", "a", "clear", "voice", "détaillé", "😀"]
    rng = random.Random(7)
    prompt = " ".join(rng.choice(words) for _ in range(2000))
    refined = refine_prompt(prompt)
    assert len(prompt.split()) == 2000
    # Every word kept; the emoji made canonical ("😀 😀" -> one "smiling").
    assert refined.positive == re.sub(r"smiling( smiling)+", "smiling", prompt.replace("😀", "smiling"))
    assert refined.user_tokens == refined.positive_tokens > 2000
    assert not refined.fits
    assert [e.what for e in refined.entries("removed", "budget")] == [  # lowest priority first
        "high detail", "natural skin texture", "sharp focus on the eyes", "photorealistic", "plain neutral background",
        "85mm lens", "shallow depth of field", "soft even lighting", "eye level", "looking at the camera",
        "head and shoulders portrait"]
    (warning,) = [w for w in refined.warnings if "your own words take" in w]
    assert f"{refined.user_tokens} CLIP tokens, over the budget of 77" in warning and "none of them were cut" in warning
    # The warning names where a truncating encoder cuts: the words before fit 77 tokens exactly.
    cut = warning.split("ignores everything from '")[1].split(" ...'")[0]
    before = refined.positive[:refined.positive.index(cut)]
    assert clip_tokens.count_tokens(before) <= 77 < clip_tokens.count_tokens(before + cut.split()[0])


def test_budget_drops_the_lowest_priority_first_and_reports_counts():
    refined = refine_prompt("a woman", token_budget=30)
    dropped = [e.what for e in refined.entries("removed", "budget") if e.prompt == "positive"]
    assert refined.positive_tokens <= 30 < clip_tokens.count_tokens(refined.positive + ", " + dropped[-1])
    assert dropped == ["high detail", "natural skin texture", "sharp focus on the eyes", "photorealistic",
                       "plain neutral background", "85mm lens"]
    assert refined.report_text().startswith("Positive prompt: 26 of 30 CLIP tokens (your words: 4; start and end")


def test_your_long_negative_is_kept_whole_with_a_warning():
    negative = ", ".join(f"bad thing {i}" for i in range(40))
    refined = refine_prompt("woman", negative=negative, infer_detail=False)
    assert refined.negative == negative
    assert len(refined.entries("removed", "budget")) == len(DEFAULT_NEGATIVES.split(", "))
    assert any("negative prompt takes" in w for w in refined.warnings)


def test_token_budget_is_checked():
    for bad in (2, 0, -5, 77.0, True, "77"):
        with pytest.raises(InputError) as caught:
            refine_prompt("a woman", token_budget=bad)
        assert caught.value.input_name == "token_budget"


def test_bad_inputs_name_themselves():
    with pytest.raises(InputError) as caught:
        refine_prompt("a woman", preset="disco")
    assert caught.value.input_name == "preset" and "studio, office, outdoor, cinematic" in str(caught.value)
    with pytest.raises(InputError) as caught:
        refine_prompt(42)
    assert caught.value.input_name == "prompt"
    with pytest.raises(InputError) as caught:
        refine_prompt("a", negative=["x"])
    assert caught.value.input_name == "negative"


# ---- determinism and the data type ---------------------------------------------------------------


def test_deterministic_and_json_round_trip():
    kwargs = dict(prompt="A grinning woman, red hair, blonde hair, no glasses, 😀", negative="ugly",
                  preset="cinematic", token_budget=60)
    first, second = refine_prompt(**kwargs), refine_prompt(**kwargs)
    assert first.to_json() == second.to_json()
    again = RefinedPrompt.from_json(first.to_json())
    assert again == first and again.to_dict()["format"] == "talkinghead.refined_prompt/1"
    assert again.report[0].action in ("rewritten", "moved", "removed", "added", "skipped")
    assert first.rules_files == [SHIPPED_RULES_PATH] and len(first.rules_digest) == 64


def test_deterministic_across_processes():
    script = ("import sys; from talkinghead.pipeline.prompt.refiner import refine_prompt; "
              "sys.stdout.write(refine_prompt('Smiling, frowning woman, red hair, blonde hair, night', "
              "preset='outdoor').to_json())")
    outputs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                              cwd=REPO.parent)
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    assert len(outputs) == 1


# ---- user rules files ----------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_rules_file_extends_vocabulary_presets_negatives_and_policy(tmp_path):
    rules = write(tmp_path / "mine.toml", """
[[descriptor]]
text = "smiling"
synonyms = ["lächelnd", "souriante"]

[presets.newsroom]
description = "news desk"
negative = ["teleprompter glare"]
[presets.newsroom.infer]
background = ["blurred newsroom background"]

[[negative]]
text = "jpeg artifacts"
enabled = false

[policy.terms]
sexual = ["spicy"]
""")
    refined = refine_prompt("eine lächelnde Frau, lächelnd", preset="newsroom", rules=str(rules))
    assert refined.positive.startswith("eine lächelnde frau, smiling, head and shoulders portrait")
    assert "blurred newsroom background" in refined.positive
    assert refined.negative.startswith("teleprompter glare, asymmetric face") and "jpeg artifacts" not in refined.negative
    assert refined.rules_files == [SHIPPED_RULES_PATH, str(rules)]
    with pytest.raises(PromptPolicyError):
        refine_prompt("a spicy photo", rules=str(rules))
    assert refine_prompt("a spicy photo").positive.startswith("a spicy photo")  # the shipped rules alone allow it


def test_config_folder_and_environment_files_are_merged(tmp_path, monkeypatch):
    config = tmp_path / "config"
    write(config / "prompt_rules.toml", '[categories.background]\ninfer = ["white wall"]\n')
    env_file = write(tmp_path / "env.toml", '[categories.lens]\ninfer = ["35mm lens"]\n')
    monkeypatch.setenv("TALKINGHEAD_CONFIG_DIR", str(config))
    monkeypatch.setenv(RULES_ENV_VAR, str(env_file))
    refined = refine_prompt("a man")
    assert "white wall" in refined.positive and "35mm lens" in refined.positive
    assert "plain neutral background" not in refined.positive and "85mm lens" not in refined.positive
    assert refined.rules_files == [SHIPPED_RULES_PATH, str(config / "prompt_rules.toml"), str(env_file)]
    monkeypatch.setenv(RULES_ENV_VAR, str(tmp_path / "missing.toml"))
    with pytest.raises(InputError) as caught:
        refine_prompt("a man")
    assert caught.value.input_name == RULES_ENV_VAR


def test_shipped_policy_cannot_be_weakened(tmp_path):
    disable = write(tmp_path / "disable.toml", '[policy]\ndisable = ["sexual content"]\n')
    with pytest.raises(InputError, match="locked policy rule 'sexual content'"):
        refine_prompt("a woman", rules=str(disable))
    redefine = write(tmp_path / "redefine.toml", '[[policy.rule]]\nname = "sexual content"\nall = ["minors"]\n')
    with pytest.raises(InputError, match="redefines the locked policy rule"):
        refine_prompt("a woman", rules=str(redefine))
    own = write(tmp_path / "own.toml", """
[policy]
disable = ["no clowns"]
[policy.terms]
clowns = ["clown*"]
[[policy.rule]]
name = "no clowns"
all = ["clowns"]
message = "No clowns."
""")
    assert refine_prompt("a clown", rules=str(own)).positive.startswith("a clown")


@pytest.mark.parametrize("text, fragment", [
    ("this is = not toml", "is not valid TOML"),
    ('[conflicts]\nhair = ["red hair", "mauve hair"]\n', "'mauve hair'] which are not descriptors"),
    ('[[descriptor]]\ntext = "laughing"\nsynonyms = ["grinning"]\n', "belongs to both descriptors"),
    ('[presets.x.infer]\nmood = ["calm"]\n', "presets.x.infer.mood: no such category"),
])
def test_broken_rules_files_are_named(tmp_path, text, fragment):
    path = write(tmp_path / "broken.toml", text)
    with pytest.raises(InputError) as caught:
        refine_prompt("a woman", rules=str(path))
    assert fragment in str(caught.value)
    with pytest.raises(InputError, match="no rules file at"):
        refine_prompt("a woman", rules=str(tmp_path / "nope.toml"))


def test_shipped_rules_cover_the_issue():
    rules = load_rules(include_user=False)
    assert {"studio", "office", "outdoor", "cinematic"} <= set(rules.presets)
    assert {"time_of_day", "expression", "framing", "hair_color"} <= set(rules.conflicts)
    negatives = {n.text for n in rules.negatives}
    assert {"asymmetric face", "extra teeth", "malformed teeth", "blurred eyes", "deformed mouth", "flicker", "text",
            "watermark"} <= negatives
    assert [c.name for c in rules.categories][:3] == ["framing", "gaze", "camera_angle"]
    assert all(rule.locked for rule in rules.policy_rules)


# ---- the CLIP tokenizer ------------------------------------------------------------------------


def parity_strings() -> list[str]:
    fixed = ["", " ", "a photo of a cat", "Hello, World!!", "don't you've I'LL", "''s", "naïve café résumé",
             "Ünïcödé ΟΔΟΣ İstanbul", "東京の夜景、美しい", "😀😃 emoji 👩‍👩‍👧 🇫🇷 ❤️", "85mm f/1.8, 4k UHD",
             "a\x1cb\u200bc\u00a0d", "x<|endoftext|>y <|startoftext|>", "tabs\tand\nnewlines   many",
             "(red hair:1.2), [blue], {x}", "日本語テキスト and русский текст", "مرحبا بالعالم", "١٢٣ ٤٥",
             "ｆｕｌｌｗｉｄｔｈ", "e\u0301 combining", "ß ẞ ǅ", "<|ENDOFTEXT|>", "123456789 3.14159"]
    rng = random.Random(0)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \t\n" + "éüñçøå東京😀ΣσςЖж’“”—–…"
    randoms = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(1500)]
    words = ["portrait", "woman", "smiling", "soft", "lighting", "background", "a", "of", "détaillé", "😀", "東京"]
    long = " ".join(rng.choice(words) for _ in range(2000))
    return fixed + randoms + [long]


def test_tokenizer_basics():
    tokenizer = clip_tokens.get_tokenizer()
    assert len(tokenizer.encoder) == clip_tokens.VOCAB_SIZE == 49408
    assert clip_tokens.count_tokens("") == 2  # start + end
    assert clip_tokens.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert tokenizer.decode(clip_tokens.encode("A Photo of a CAT!")) == "a photo of a cat !"
    assert clip_tokens.count_tokens("a photo of a cat") == 7


def test_tokenizer_matches_transformers_clip_tokenizer():
    transformers = pytest.importorskip("transformers")
    tokenizer_dir = Path(os.environ.get("TALKINGHEAD_COMFYUI_DIR", REPO / ".venv-test/comfyui/ComfyUI")) / "comfy" / "sd1_tokenizer"
    if tokenizer_dir.is_dir():
        reference = transformers.CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    else:  # the same vocabulary, built from our file
        tokenizer = clip_tokens.get_tokenizer()
        merges = [" ".join(pair) for pair, _ in sorted(tokenizer.ranks.items(), key=lambda kv: kv[1])]
        reference = transformers.CLIPTokenizer(vocab=tokenizer.encoder, merges=merges)
    mismatches = [s for s in parity_strings() if clip_tokens.encode(s) != reference(s)["input_ids"][1:-1]]
    assert mismatches == []


@pytest.mark.slow
def test_tokenizer_matches_comfyui_sd1_tokenizer():
    comfy_dir = os.environ.get("TALKINGHEAD_COMFYUI_DIR")
    if not comfy_dir or not Path(comfy_dir, "comfy", "sd1_clip.py").is_file():
        pytest.skip("TALKINGHEAD_COMFYUI_DIR does not point at a ComfyUI checkout")
    strings = [s for s in parity_strings() if "<|" not in s and "(" not in s and ")" not in s and "\\" not in s
               and "embedding:" not in s]
    script = """
import json, sys
sys.path.insert(0, sys.argv[1])
import comfy.cli_args
comfy.cli_args.args.cpu = True
from comfy.sd1_clip import SDTokenizer
tokenizer = SDTokenizer()
out = []
for text in json.load(sys.stdin):
    ids = [t for batch in tokenizer.tokenize_with_weights(text) for t, *_ in batch]
    out.append([t for t in ids if t not in (49406, 49407)])
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script, comfy_dir], input=json.dumps(strings), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    mismatches = [s for s, ids in zip(strings, theirs) if clip_tokens.encode(s) != ids]
    assert mismatches == []


# ---- the rewriter plumbing ---------------------------------------------------------------------


class FakeRewriter:
    name = "fake model"

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def __call__(self, prompt):
        self.calls.append(prompt)
        return self.answer


def test_rewriter_runs_first_and_the_rules_after_it():
    rewriter = FakeRewriter("A grinning woman, red hair, close up, cinematic rim light, studio backdrop, 4k")
    refined = refine_prompt("a woman, red hair", rewriter=rewriter, token_budget=14)
    assert rewriter.calls == ["a woman, red hair"]
    assert refined.rewritten_prompt == rewriter.answer and refined.rewriter == "fake model"
    assert refined.report[0].action == "rewritten" and refined.report[0].stage == "rewrite"
    assert refined.report[0].source == "rewriter"
    # Your words stay; the rewriter's additions go over budget before yours, after inferred detail.
    assert refined.positive == "a smiling woman, red hair, close-up"
    dropped = [(e.what, e.source) for e in refined.entries("removed", "budget") if e.prompt == "positive"]
    assert dropped[-3:] == [("4k", "rewriter"), ("studio backdrop", "rewriter"), ("cinematic rim light", "rewriter")]
    assert any("left out your words 'a woman'" in w for w in refined.warnings)


def test_rewriter_output_is_checked_against_the_policy():
    with pytest.raises(PromptPolicyError) as caught:
        refine_prompt("a woman", rewriter=FakeRewriter("a nude woman"))
    assert caught.value.input_name == "prompt (as rewritten by the language model)"
    never_called = FakeRewriter("a woman")
    with pytest.raises(PromptPolicyError):
        refine_prompt("a nude woman", rewriter=never_called)
    assert never_called.calls == []


def test_rewriter_that_returns_nothing_leaves_your_prompt():
    refined = refine_prompt("A woman", rewriter=FakeRewriter("  "), infer_detail=False)
    assert refined.positive == "a woman" and refined.rewritten_prompt is None
    assert any("returned nothing" in w for w in refined.warnings)
    assert has_entry(refined, "rewritten", "A woman", "a woman")


@pytest.fixture(scope="module")
def tiny_language_model(tmp_path_factory):
    """A random-initialised GPT-2 (1 layer, 16 dims) with a word-level tokenizer, saved like a real model."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    torch.set_num_threads(1)
    words = ["[UNK]", "[PAD]", "[EOS]", ",", "smiling", "woman", "studio", "lighting", "red", "hair", "close-up",
             "night", "portrait", "a"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                                     eos_token="[EOS]")
    folder = tmp_path_factory.mktemp("models") / "LLM" / "tiny-gpt2"
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(words), n_positions=256, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=2, eos_token_id=2)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        model.transformer.wte.weight[:3] = 0  # special tokens never win: the answer is words
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder, set(words[3:])


def test_language_model_rewriter_plumbing(tiny_language_model, monkeypatch):
    from talkinghead.pipeline.prompt.rewriter import LanguageModelRewriter, load_rewriter

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, vocabulary = tiny_language_model
    rewriter = LanguageModelRewriter(str(folder), max_new_tokens=12)
    answer = rewriter("a grinning woman, red hair")
    assert answer and set(answer.split()) <= vocabulary
    assert rewriter("a grinning woman, red hair") == answer  # greedy: the same every time
    assert "Description: a grinning woman, red hair" in rewriter.build_input("a grinning woman, red hair")
    assert load_rewriter(str(folder)) is load_rewriter(str(folder))
    refined = refine_prompt("a grinning woman, red hair", rewriter=rewriter)
    assert refined.rewritten_prompt == answer and refined.rewriter == "language model 'tiny-gpt2'"
    assert refined.report[0].to == answer


def test_language_model_folder_is_checked(tmp_path):
    from talkinghead.pipeline.prompt.rewriter import LanguageModelRewriter

    with pytest.raises(InputError) as caught:
        LanguageModelRewriter(str(tmp_path))
    assert caught.value.input_name == "llm_model" and "no config.json" in str(caught.value)


# ---- the node and the command --------------------------------------------------------------------


def test_node_inputs_outputs_and_report(tmp_path):
    pytest.importorskip("torch")
    from talkinghead.nodes import comfy_env
    from talkinghead.nodes.prompt import TalkingHeadPromptRefiner
    from talkinghead.nodes.registry import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    assert NODE_CLASS_MAPPINGS["TalkingHeadPromptRefiner"] is TalkingHeadPromptRefiner
    assert NODE_DISPLAY_NAME_MAPPINGS["TalkingHeadPromptRefiner"] == "Prompt Refiner (Talking Head)"
    spec = TalkingHeadPromptRefiner.INPUT_TYPES()
    for section in spec.values():
        for name, (kind, options) in section.items():
            assert options.get("tooltip"), name
    assert spec["required"]["preset"][0] == ["none", "studio", "office", "outdoor", "cinematic"]
    assert spec["required"]["token_budget"][1]["default"] == 77
    assert TalkingHeadPromptRefiner.RETURN_TYPES == ("TH_REFINED_PROMPT", "STRING", "STRING", "STRING")

    node = TalkingHeadPromptRefiner()
    out = node.refine("A grinning woman, no glasses", "", "studio", 77, True)
    refined, positive, negative, report = out["result"]
    assert isinstance(refined, RefinedPrompt) and positive == refined.positive and negative == refined.negative
    assert positive.startswith("a smiling woman, head and shoulders portrait") and negative.startswith("glasses, harsh")
    assert report == out["ui"]["text"][0] and report.startswith("Positive prompt: ")
    assert out["ui"]["talkinghead_prompt"][0]["fits"] is True

    with pytest.raises(PromptPolicyError):
        node.refine("a nude woman", "", "none", 77, True)

    input_dir = tmp_path / "input"
    write(input_dir / "rules" / "mine.toml", '[[descriptor]]\ntext = "smiling"\nsynonyms = ["lächelnd"]\n')
    write(tmp_path / "outside.toml", "")
    with comfy_env.headless(comfy_env.HeadlessContext(str(input_dir), str(tmp_path / "output"))):
        out = node.refine("lächelnd", "", "none", 77, False, rules_file="rules/mine.toml")
        assert out["result"][1] == "smiling"
        with pytest.raises(InputError) as caught:
            node.refine("a", "", "none", 77, False, rules_file="../outside.toml")
        assert caught.value.input_name == "rules_file"


def test_node_with_a_language_model_from_the_models_folder(tiny_language_model, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    from talkinghead.nodes import comfy_env
    from talkinghead.nodes.prompt import TalkingHeadPromptRefiner

    folder, _ = tiny_language_model
    monkeypatch.setenv(comfy_env.MODELS_DIR_ENV, str(folder.parent.parent))
    with comfy_env.headless(comfy_env.HeadlessContext(str(tmp_path), str(tmp_path))):
        assert "tiny-gpt2" in TalkingHeadPromptRefiner.INPUT_TYPES()["optional"]["llm_model"][0]
        out = TalkingHeadPromptRefiner().refine("a woman", "", "none", 77, True, "", "tiny-gpt2")
        assert out["result"][0].rewriter == "language model 'tiny-gpt2'"
        with pytest.raises(InputError) as caught:
            TalkingHeadPromptRefiner().refine("a woman", "", "none", 77, True, "", "../../etc")
        assert caught.value.input_name == "llm_model"


def test_node_in_the_headless_executor(tmp_path):
    pytest.importorskip("torch")
    from talkinghead.nodes.headless.executor import run_graph

    graph = {"1": {"class_type": "TalkingHeadPromptRefiner",
                   "inputs": {"prompt": "close up, full body, a man", "negative": "", "preset": "office",
                              "token_budget": 77, "infer_detail": True}}}
    result = run_graph(graph, input_dir=str(tmp_path), output_dir=str(tmp_path), progress=False)
    text = result.outputs["1"]["text"][0]
    assert "removed 'close-up': contradicts 'full body' (framing)" in text
    assert result.results["1"][1].startswith("full body, a man, looking at the camera")


def test_cli_prompt(capsys, tmp_path):
    from talkinghead.nodes.headless.cli import main

    assert main(["prompt", "A grinning woman, no glasses", "--preset", "studio", "--budget", "40"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("positive: a smiling woman, head and shoulders portrait")
    assert lines[1].startswith("negative: glasses, harsh shadows")
    assert "of 40 CLIP tokens" in err and "moved 'no glasses' -> 'glasses'" in err

    assert main(["prompt", "night, daylight", "--no-infer", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["positive"] == "daylight" and payload["format"] == "talkinghead.refined_prompt/1"
    assert payload["report"][0]["action"] == "removed"

    rules = write(tmp_path / "r.toml", '[[descriptor]]\ntext = "smiling"\nsynonyms = ["lächelnd"]\n')
    prompt_file = write(tmp_path / "p.txt", "lächelnd\n")
    assert main(["prompt", "--file", str(prompt_file), "--rules", str(rules), "--no-infer"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "positive: smiling"

    assert main(["prompt", "a nude woman"]) == 2
    assert "refused by the content policy: sexual content" in capsys.readouterr().err
    assert main(["prompt", "a woman", "--preset", "disco"]) == 2
    assert "preset: unknown preset 'disco'" in capsys.readouterr().err


# ---- packaging: the vocabulary and rules ship in the wheel and work offline ----------------------


def test_wheel_ships_vocabulary_rules_and_licence(tmp_path):
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = out.glob("talkinghead-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for expected in ("talkinghead/pipeline/prompt/data/bpe_simple_vocab_16e6.txt.gz", "talkinghead/pipeline/prompt/data/prompt_rules.toml",
                     "talkinghead/pipeline/prompt/data/LICENSE-clip-bpe.txt", "talkinghead/pipeline/prompt/refiner.py",
                     "talkinghead/pipeline/prompt/clip_tokens.py", "talkinghead/nodes/prompt.py"):
        assert expected in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    script = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'tokenizers', 'open_clip', 'comfy', 'folder_paths'):
            raise ImportError('blocked for the test: ' + name)
sys.meta_path.insert(0, Block())
from talkinghead.pipeline.prompt.refiner import refine_prompt
refined = refine_prompt('A grinning woman, red hair, blonde hair', preset='studio')
assert refined.positive.startswith('a smiling woman, blonde hair, head and shoulders portrait'), refined.positive
print(refined.positive_tokens)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin",
                               "TALKINGHEAD_CONFIG_DIR": str(tmp_path / "cfg")}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) <= 77
