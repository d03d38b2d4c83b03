"""PromptRefiner: a loose prompt -> a dense, consistent one with negatives, inside CLIP's token budget.

The pass is rule-based and deterministic; every rule comes from `data/prompt_rules.toml` merged with
the user's rules files (see `prompt_rules`). In order:

1. **Policy.** Prompts asking for sexual content, sexual content involving minors, or to pass the
   output off as a real, named person are refused with `PromptPolicyError` (phrases that are moved to
   the negative prompt, "no ...", do not count).
2. **Rewrite** (optional). A rewriter, e.g. a local language model (`prompt_rewriter`), rewrites the
   prompt first; its output is checked against the policy again and the rule pass runs on it. Its
   phrases that were not in your prompt count as "rewriter" words: below yours, above inferred ones.
3. **Normalise.** The prompt is split into phrases (commas, semicolons, "|", line breaks, sentence
   ends; never inside brackets). Spacing, casing and punctuation are normalised, synonyms become the
   canonical descriptor ("closeup" -> "close-up"). Weighted phrases "(text:1.2)" keep their weight.
4. **Negation.** A phrase that starts with "no", "not", "without", ... is moved to the negative prompt
   without that word: text encoders do not understand negation.
5. **Conflicts.** Of contradictory descriptors (a conflict group: "night" and "daylight", "smiling" and
   "frowning", "close-up" and "full body", two hair colours, ...) one survives. Precedence: your words
   beat the rewriter's, which beat inferred ones; among equals, later words beat earlier ones. The
   losing words are cut out of their phrase (a phrase left with nothing but "a", "with", ... goes).
   Then duplicate phrases go (the first is kept).
6. **Inference** (`infer_detail`). For each category a talking-head shot needs (framing, gaze, camera
   angle, lighting, lens, depth of field, background, style, quality priors) that the prompt leaves
   unsaid, the rules' text is added; a preset steers it. Inferred text that contradicts your words is
   skipped.
7. **Negatives.** Your negative prompt first, then the phrases moved there, then the preset's, then
   negatives for the known failure modes (asymmetric face, deformed mouth, extra or malformed teeth,
   blurred eyes, flicker, text, watermark, ...), each left out when your prompt asks for it.
8. **Budget.** Tokens are counted with the real CLIP tokenizer (`clip_tokens`: start and end tokens
   included, so 77 leaves 75 for text). Over the budget, inferred text is dropped lowest priority first,
   then the rewriter's additions; your words never are. If your words alone exceed it, a warning says so
   and where an encoder that truncates would cut.

Every change is a `ReportEntry` (action, what, why, source, stage, and what it became).
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Union

from ..core.errors import InputError
from . import clip_tokens
from .rules import PromptRules, load_rules

#: The token budget of CLIP text encoders: start token + 75 text tokens + end token.
DEFAULT_TOKEN_BUDGET = clip_tokens.CONTEXT_LENGTH
MIN_TOKEN_BUDGET = 3
NO_PRESET = "none"

#: Report actions.
ADDED, REMOVED, REWRITTEN, MOVED, SKIPPED = "added", "removed", "rewritten", "moved", "skipped"
#: Where words come from, in order of precedence (higher wins a conflict, and is kept longer).
SOURCE_RANK = {"user": 3, "rewriter": 2, "preset": 1, "inferred": 1}

_SEPARATORS = frozenset(",;|\n\r，、；")
_CJK_STOPS = frozenset("。！？")
_SENTENCE_STOPS = frozenset(".!?…")
_OPEN, _CLOSE = "([{", ")]}"
_EDGE_PUNCTUATION = " \t\"`*_~.,;:!?¡¿-–—…«»„“”"
_QUOTES = str.maketrans({"’": "'", "‘": "'", "‛": "'", "`": "'"})
_CONNECTORS = frozenset({"and", "or", "with", "&", "+", "plus"})
#: Prepositions that lose their object when a descriptor is cut ("at night in daylight" -> "in daylight").
_PREPOSITIONS = frozenset({"at", "in", "on", "during", "by", "under", "against", "from", "into", "for"})


class PromptPolicyError(InputError):
    """The prompt asks for something the content policy refuses. Carries the rule and the words matched."""

    def __init__(self, input_name: str, rule_name: str, matched: list[str], message: str):
        self.rule_name = rule_name
        self.matched = list(matched)
        words = ", ".join(repr(m) for m in matched)
        super().__init__(
            input_name,
            f"refused by the content policy: {rule_name} (matched {words})",
            f"{message} Rephrase the prompt without it. The policy lists are in the prompt rules "
            "(pipeline/prompt/data/prompt_rules.toml); you can add terms and rules, not remove the shipped ones.",
        )


@dataclass
class ReportEntry:
    """One change the refiner made.

    Attributes:
        action: "rewritten", "removed", "added", "moved" (to the negative prompt), or "skipped" (inferred
            or default text not added, and why).
        what: the words concerned, as they were.
        why: the reason, in words.
        source: whose words: "user" (your prompt), "user_negative", "rewriter", "inferred", "preset",
            "default" (default negatives).
        stage: "rewrite", "normalise", "negation", "duplicates", "conflict", "infer", "negative", "budget".
        prompt: which prompt the change is in: "positive" or "negative".
        to: what the words became ("" when removed entirely).
    """

    action: str
    what: str
    why: str
    source: str
    stage: str
    prompt: str = "positive"
    to: str = ""

    def describe(self) -> str:
        arrow = f" -> {self.to!r}" if self.to and self.action in (REWRITTEN, MOVED) else ""
        left = f" (phrase now {self.to!r})" if self.to and self.action == REMOVED else ""
        target = " [negative]" if self.prompt == "negative" else ""
        return f"{self.action} {self.what!r}{arrow}{target}: {self.why}{left} ({self.source})"


@dataclass
class RefinedPrompt:
    """A refined prompt pair with the report of what changed.

    Attributes:
        positive / negative: the prompts to encode.
        report: every change, in the order made.
        warnings: what the user should know (empty prompt, words over budget, non-Latin text, ...).
        positive_tokens / negative_tokens: CLIP tokens of each prompt, start and end tokens included.
        user_tokens: CLIP tokens of your own words in the positive prompt alone (start and end included).
        token_budget: the budget both prompts were fitted to.
        preset: the preset used, or None.
        infer_detail: whether unsaid detail was inferred.
        source_prompt / source_negative: the inputs as given.
        rewritten_prompt: the rewriter's output when one ran, else None.
        rewriter: the rewriter's name when one ran, else "".
        rules_digest: sha256 of the merged rules; rules_files: the files merged, shipped one first.
    """

    positive: str
    negative: str
    report: list[ReportEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    positive_tokens: int = 2
    negative_tokens: int = 2
    user_tokens: int = 2
    token_budget: int = DEFAULT_TOKEN_BUDGET
    preset: Optional[str] = None
    infer_detail: bool = True
    source_prompt: str = ""
    source_negative: str = ""
    rewritten_prompt: Optional[str] = None
    rewriter: str = ""
    rules_digest: str = ""
    rules_files: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        """Both prompts are inside the token budget."""
        return self.positive_tokens <= self.token_budget and self.negative_tokens <= self.token_budget

    def entries(self, action: Optional[str] = None, stage: Optional[str] = None) -> list[ReportEntry]:
        """Report entries, optionally only those of one action and/or stage."""
        return [e for e in self.report if (action is None or e.action == action) and (stage is None or e.stage == stage)]

    def report_text(self) -> str:
        """The report as text: counts, every change, warnings."""
        lines = [
            f"Positive prompt: {self.positive_tokens} of {self.token_budget} CLIP tokens "
            f"(your words: {self.user_tokens}; start and end tokens included).",
            f"Negative prompt: {self.negative_tokens} of {self.token_budget} CLIP tokens.",
            f"Preset: {self.preset or NO_PRESET}; inferred detail: {'on' if self.infer_detail else 'off'}"
            + (f"; rewritten by {self.rewriter}" if self.rewriter else "") + ".",
        ]
        if self.report:
            lines.append(f"Changes ({len(self.report)}):")
            lines.extend(f"- {entry.describe()}" for entry in self.report)
        else:
            lines.append("No changes.")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        payload = asdict(self)
        payload["format"] = "talkinghead.refined_prompt/1"
        payload["fits"] = self.fits
        return payload

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, raw: dict) -> "RefinedPrompt":
        if raw.get("format", "talkinghead.refined_prompt/1") != "talkinghead.refined_prompt/1":
            raise ValueError(f"refined prompt: unknown format {raw.get('format')!r}")
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in raw.items() if k in known}
        values["report"] = [ReportEntry(**entry) for entry in raw.get("report", [])]
        values["warnings"] = list(raw.get("warnings", []))
        values["rules_files"] = list(raw.get("rules_files", []))
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "RefinedPrompt":
        return cls.from_dict(json.loads(text))


# ---- phrases -------------------------------------------------------------------------------------


@dataclass
class _Phrase:
    text: str  # normalised, without the weight wrapper
    original: str  # as typed
    source: str
    order: int
    priority: int = 0
    category: str = ""
    why: str = ""
    prefix: str = ""  # "(" of "(text:1.2)"
    suffix: str = ""  # ":1.2)"

    def render(self) -> str:
        return f"{self.prefix}{self.text}{self.suffix}"


def _split(text: str) -> list[str]:
    """Phrases of a prompt: cut at , ; | line breaks and sentence ends, never inside brackets."""
    fragments, depth, start, i, n = [], 0, 0, 0, len(text)
    while i < n:
        char = text[i]
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth = max(depth - 1, 0)
        elif depth == 0 and (char in _SEPARATORS or char in _CJK_STOPS):
            fragments.append(text[start:i])
            start = i + 1
        elif depth == 0 and char in _SENTENCE_STOPS:
            j = i
            while j < n and text[j] in _SENTENCE_STOPS:
                j += 1
            if j == n or text[j].isspace():
                fragments.append(text[start:i])
                start = i = j
                continue
            i = j
            continue
        i += 1
    fragments.append(text[start:])
    return fragments


def _format(fragment: str) -> tuple[str, str, str, list[str]]:
    """(prefix, normalised core, suffix, reasons) of one fragment; reasons name what changed."""
    reasons = []
    text = unicodedata.normalize("NFC", fragment).strip()
    if text.translate(_QUOTES) != text:
        reasons.append("punctuation")
        text = text.translate(_QUOTES)
    prefix = suffix = ""
    if text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        inner = text[1:-1]
        head, colon, weight = inner.rpartition(":")
        if colon and _is_number(weight.strip()):
            prefix, suffix, text = "(", f":{weight.strip()})", head
            if weight != weight.strip():
                reasons.append("spacing")
        else:
            prefix, suffix, text = "(", ")", inner
    collapsed = " ".join(text.split())
    if collapsed != text.strip():
        reasons.append("spacing")
    stripped = collapsed.strip(_EDGE_PUNCTUATION)
    if stripped != collapsed:
        reasons.append("punctuation")
    lowered = stripped.lower()
    if lowered != stripped:
        reasons.append("casing")
    if not lowered:
        prefix = suffix = ""
    return prefix, lowered, suffix, list(dict.fromkeys(reasons))


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if depth < 0:
            return False
    return depth == 0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return bool(text)


def _tidy(text: str, stopwords: frozenset) -> str:
    """A phrase after words were cut out of it: no doubled or dangling connectors; "" if only stopwords."""
    words: list[str] = []
    for word in text.split():
        if words and word in _CONNECTORS and words[-1] in _CONNECTORS:
            continue
        if words and word in _PREPOSITIONS and words[-1] in _PREPOSITIONS:
            words[-1] = word            # the earlier preposition lost its object: keep the later one
            continue
        words.append(word)
    while words and words[0] in _CONNECTORS:
        words.pop(0)
    while words and (words[-1] in _CONNECTORS or words[-1] in _PREPOSITIONS or words[-1] in stopwords):
        words.pop()
    if all(w in stopwords for w in words):
        return ""
    return " ".join(words)


def _is_non_latin_letter(char: str) -> bool:
    if not unicodedata.category(char).startswith("L"):
        return False
    return not unicodedata.name(char, "").startswith("LATIN")


# ---- the refiner ---------------------------------------------------------------------------------


class _Refiner:
    def __init__(self, rules: PromptRules):
        self.rules = rules
        self.report: list[ReportEntry] = []
        self.warnings: list[str] = []
        self._order = 0

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    def note(self, action, what, why, source, stage, prompt="positive", to=""):
        self.report.append(ReportEntry(action, what, why, source, stage, prompt, to))

    # -- normalisation
    def phrases(self, text: str, source: str, prompt: str) -> list[_Phrase]:
        phrases = []
        for fragment in _split(text):
            prefix, core, suffix, reasons = _format(fragment)
            if not core:
                continue
            if reasons:
                self.note(REWRITTEN, fragment.strip(), "normalised " + ", ".join(reasons), source, "normalise",
                          prompt, f"{prefix}{core}{suffix}")
            phrases.append(_Phrase(core, fragment.strip(), source, self._next_order(), prefix=prefix, suffix=suffix))
        return phrases

    def split_negations(self, phrases: list[_Phrase]) -> tuple[list[_Phrase], list[_Phrase]]:
        kept, moved = [], []
        for phrase in phrases:
            head, _, rest = phrase.text.partition(" ")
            if head in self.rules.negation_prefixes and rest.strip():
                moved.append(_Phrase(rest.strip(), phrase.original, phrase.source, phrase.order,
                                     prefix=phrase.prefix, suffix=phrase.suffix))
                self.note(MOVED, phrase.render(), f"text encoders ignore {head!r}: {phrase.text!r} would make "
                          f"{rest.strip()!r} likelier, so it goes to the negative prompt", phrase.source, "negation",
                          "positive", moved[-1].render())
            else:
                kept.append(phrase)
        return kept, moved

    def synonyms(self, phrases: list[_Phrase], prompt: str) -> None:
        for phrase in phrases:
            text, pieces, last, changed = phrase.text, [], 0, False
            for start, end, descriptor, kind in self.rules.find_descriptors(text):
                if kind != "synonym":
                    continue
                replacement = descriptor.text
                if start > 0 and not text[start - 1].isspace():
                    replacement = " " + replacement
                if end < len(text) and not text[end].isspace():
                    replacement += " "
                pieces.extend([text[last:start], replacement])
                last, changed = end, True
                self.note(REWRITTEN, text[start:end], f"synonym of the canonical descriptor {descriptor.text!r}",
                          phrase.source, "normalise", prompt, descriptor.text)
            if changed:
                pieces.append(text[last:])
                words: list[str] = []
                for word in "".join(pieces).split():
                    if not (words and word == words[-1] and word in self.rules.descriptors):
                        words.append(word)  # "smiling 😀" gives one "smiling", not two
                phrase.text = " ".join(words)

    def dedupe(self, phrases: list[_Phrase], prompt: str, seen: Optional[set] = None) -> list[_Phrase]:
        seen = set() if seen is None else seen
        kept = []
        for phrase in phrases:
            key = phrase.render()
            if key in seen:
                self.note(REMOVED, key, "duplicate of an earlier phrase", phrase.source, "duplicates", prompt)
                continue
            seen.add(key)
            kept.append(phrase)
        return kept

    # -- policy
    def check_policy(self, phrases: list[_Phrase], input_name: str) -> None:
        rules = self.rules
        for rule in rules.policy_rules:
            matched = []
            for list_name in rule.all:
                matcher = rules.policy_matchers[list_name]
                found = next((m for m in (matcher.find(p.text, p.original) for p in phrases) if m), None)
                if found is None:
                    break
                matched.append(found)
            else:
                raise PromptPolicyError(input_name, rule.name, matched, rule.message)

    # -- conflicts
    def _occurrences(self, phrases: list[_Phrase]) -> dict:
        by_group: dict[str, list] = {}
        for phrase in phrases:
            for start, end, descriptor, _kind in self.rules.find_descriptors(phrase.text):
                group = self.rules.group_of.get(descriptor.text)
                if group is not None:
                    rank = (SOURCE_RANK[phrase.source], phrase.order, start)
                    by_group.setdefault(group, []).append((rank, phrase, start, end, descriptor.text))
        return by_group

    def resolve_conflicts(self, phrases: list[_Phrase]) -> list[_Phrase]:
        cuts: dict[int, list] = {}
        for group, occurrences in self._occurrences(phrases).items():
            winner = max(occurrences, key=lambda o: o[0])
            for rank, phrase, start, end, canonical in occurrences:
                if canonical == winner[4]:
                    continue
                if rank[0] < winner[0][0]:
                    reason = f"{_OWNER[winner[1].source]} words beat {_LOSER[phrase.source]}"
                else:
                    reason = "later words beat earlier ones"
                why = f"contradicts {winner[1].text[winner[2]:winner[3]]!r} ({group.replace('_', ' ')}): {reason}"
                cuts.setdefault(id(phrase), []).append((start, end, why))
        if not cuts:
            return phrases
        kept = []
        for phrase in phrases:
            spans = sorted(cuts.get(id(phrase), []))
            if not spans:
                kept.append(phrase)
                continue
            text = phrase.text
            for start, end, _why in reversed(spans):
                text = text[:start] + " " + text[end:]
            before = phrase.text
            phrase.text = _tidy(text, self.rules.stopwords)
            for start, end, why in spans:
                self.note(REMOVED, before[start:end], why, phrase.source, "conflict", "positive", phrase.render()
                          if phrase.text else "")
            if phrase.text:
                kept.append(phrase)
        return kept

    def contradiction(self, text: str, accepted: list[_Phrase]) -> Optional[str]:
        """Why inferred `text` may not be added (it contradicts accepted words), else None."""
        groups = {}
        for start, end, descriptor, _kind in self.rules.find_descriptors(text):
            group = self.rules.group_of.get(descriptor.text)
            if group is not None:
                groups[group] = descriptor.text
        if not groups:
            return None
        for group, occurrences in self._occurrences(accepted).items():
            if group in groups:
                for _rank, phrase, start, end, canonical in occurrences:
                    if canonical != groups[group]:
                        owner = _OWNER[phrase.source]
                        return (f"contradicts {owner} {phrase.text[start:end]!r} ({group.replace('_', ' ')}): "
                                + (f"{owner} words beat inferred ones" if phrase.source in ("user", "rewriter")
                                   else "earlier inferred words are kept"))
        return None

    # -- inference
    def addressed(self, category, phrases: list[_Phrase]) -> bool:
        matcher = self.rules.category_detect[category.name]
        for phrase in phrases:
            if any(d.category == category.name for _s, _e, d, _k in self.rules.find_descriptors(phrase.text)):
                return True
            if matcher.find(phrase.text):
                return True
        return False

    def infer(self, explicit: list[_Phrase], preset) -> list[_Phrase]:
        added: list[_Phrase] = []
        for category in self.rules.categories:
            from_preset = preset is not None and category.name in preset.infer
            items = preset.infer[category.name] if from_preset else category.infer
            if not items or self.addressed(category, explicit):
                continue
            source = "preset" if from_preset else "inferred"
            unsaid = f"{category.name.replace('_', ' ')} unsaid"
            why = f"{unsaid}: the preset {preset.name!r} chooses it" if from_preset else f"{unsaid}: {category.why}"
            for item in items:
                reason = self.contradiction(item.text, explicit + added)
                if reason is not None:
                    self.note(SKIPPED, item.text, reason, source, "infer")
                    continue
                if any(p.text == item.text for p in explicit + added):
                    continue
                added.append(_Phrase(item.text, item.text, source, self._next_order(), item.priority, category.name, why))
                self.note(ADDED, item.text, why, source, "infer")
        return added


_OWNER = {"user": "your", "rewriter": "the rewriter's", "inferred": "inferred", "preset": "the preset's"}
_LOSER = {"user": "yours", "rewriter": "the rewriter's", "inferred": "inferred ones", "preset": "the preset's"}


def _fit(refiner: _Refiner, phrases: list[_Phrase], budget: int, protected: set, prompt: str) -> tuple[list[_Phrase], int]:
    """Drops unprotected phrases, lowest priority first (ties: later first), until the joined phrases fit."""
    separator = refiner.rules.separator

    def count(items):
        return clip_tokens.count_tokens(separator.join(p.render() for p in items))

    tokens = count(phrases)
    if tokens <= budget:
        return phrases, tokens
    droppable = sorted((p for p in phrases if p.source not in protected),
                       key=lambda p: (SOURCE_RANK.get(p.source, 0), p.priority, -p.order))
    yours = [p for p in phrases if p.source in protected]
    floor = count(yours)
    if floor > budget:  # your words alone are over: nothing else can stay
        for phrase in droppable:
            refiner.note(REMOVED, phrase.render(), f"over the token budget: your own words alone take {floor} > "
                         f"{budget} tokens", phrase.source, "budget", prompt)
        return yours, floor
    kept = list(phrases)
    for phrase in droppable:
        if tokens <= budget:
            break
        before = tokens
        kept.remove(phrase)
        tokens = count(kept)
        if phrase.source == "rewriter":
            what = "the rewriter's additions go after inferred detail"
        elif prompt == "negative":
            what = f"added negatives of the lowest priority ({phrase.priority}) go first"
        else:
            what = f"inferred detail of the lowest priority ({phrase.priority}) goes first"
        refiner.note(REMOVED, phrase.render(), f"over the token budget ({before} > {budget} tokens): {what}",
                     phrase.source, "budget", prompt)
    return kept, tokens


def _cut_point(text: str, budget: int, words_shown: int = 6) -> str:
    """The words from which an encoder that truncates at `budget` tokens loses the text.

    Token pieces never span whitespace, so the count of a text is the sum of its words' counts.
    """
    words = text.split()
    used = 2  # start and end tokens
    for i, word in enumerate(words):
        used += len(clip_tokens.encode(word))
        if used > budget:
            shown = " ".join(words[i:i + words_shown])
            return shown + (" ..." if len(words) > i + words_shown else "")
    return ""


Rewriter = Callable[[str], str]


def refine_prompt(prompt: Optional[str], negative: Optional[str] = "", preset: Optional[str] = None,
                  token_budget: int = DEFAULT_TOKEN_BUDGET, infer_detail: bool = True,
                  rules: Union[PromptRules, str, os.PathLike, list, None] = None,
                  rewriter: Optional[Rewriter] = None) -> RefinedPrompt:
    """Refines `prompt` (and `negative`) for a talking-head shot. Deterministic.

    Args:
        prompt: the loose prompt, any length or language ("" or None: only inferred detail).
        negative: your negative prompt (kept first).
        preset: "studio", "office", "outdoor", "cinematic", ... (names in the rules), or None / "none".
        token_budget: CLIP tokens each prompt may take, start and end tokens included (77: CLIP's context).
        infer_detail: add what a talking-head shot needs and the prompt leaves unsaid.
        rules: a `PromptRules`, or rules file(s) merged over the shipped and user rules; None: the shipped
            rules with the user's (`$TALKINGHEAD_CONFIG_DIR/prompt_rules.toml`, `$TALKINGHEAD_PROMPT_RULES`).
        rewriter: optional callable prompt -> prompt that runs before the rule pass (e.g. a local language
            model, `prompt_rewriter.LanguageModelRewriter`); should carry a `name`.
    Raises:
        PromptPolicyError: the prompt (or the rewriter's output) breaks the content policy.
        InputError: a bad argument or rules file, named.
    """
    prompt = _text_input(prompt, "prompt")
    negative = _text_input(negative, "negative")
    if not isinstance(token_budget, int) or isinstance(token_budget, bool) or token_budget < MIN_TOKEN_BUDGET:
        raise InputError("token_budget", f"{token_budget!r} is not a whole number of at least {MIN_TOKEN_BUDGET}",
                         f"Give the CLIP tokens allowed, start and end tokens included ({DEFAULT_TOKEN_BUDGET} is "
                         "CLIP's context length).")
    if not isinstance(rules, PromptRules):
        rules = load_rules(rules)
    preset_name = None if preset in (None, "", NO_PRESET) else str(preset).strip().lower()
    if preset_name is not None and preset_name not in rules.presets:
        raise InputError("preset", f"unknown preset {preset!r}",
                         f"Use one of: {', '.join([NO_PRESET] + rules.preset_names())} (or add it to a rules file).")
    chosen_preset = rules.presets.get(preset_name) if preset_name else None

    refiner = _Refiner(rules)
    # Policy first, on the prompt as typed (negations excluded), so a refused prompt never reaches a model.
    user_phrases = refiner.phrases(prompt, "user", "positive")
    user_phrases, moved = refiner.split_negations(user_phrases)
    refiner.check_policy(user_phrases, "prompt")

    rewritten_text, rewriter_name = None, ""
    explicit = user_phrases
    if rewriter is not None and user_phrases:
        rewriter_name = str(getattr(rewriter, "name", getattr(rewriter, "__name__", "rewriter")))
        rewritten_text = rewriter(prompt)
        if not isinstance(rewritten_text, str) or not rewritten_text.strip():
            refiner.warnings.append(f"the rewriter {rewriter_name} returned nothing; your prompt was used as it is")
            rewritten_text = None
        else:
            # The rewritten text replaces yours: its normalisation is reported instead of your prompt's.
            refiner.report = [e for e in refiner.report if e.stage != "normalise"]
            refiner.note(REWRITTEN, prompt.strip(), f"rewritten by {rewriter_name} before the rule pass", "rewriter",
                         "rewrite", "positive", rewritten_text.strip())
            yours = {p.text for p in user_phrases}
            explicit = refiner.phrases(rewritten_text, "rewriter", "positive")
            for phrase in explicit:
                if phrase.text in yours:
                    phrase.source = "user"
            explicit, moved_by_rewriter = refiner.split_negations(explicit)
            moved += moved_by_rewriter
            refiner.check_policy(explicit, "prompt (as rewritten by the language model)")
            kept = {p.text for p in explicit}
            lost = [p.render() for p in user_phrases if p.text not in kept]
            if lost:
                refiner.warnings.append("the rewriter left out your words " + ", ".join(repr(t) for t in lost))

    refiner.synonyms(explicit, "positive")
    explicit = refiner.resolve_conflicts(explicit)  # before duplicates go: "a, b, a" keeps the later "a"
    explicit = refiner.dedupe(explicit, "positive")
    user_kept = [p for p in explicit if p.source == "user"]

    inferred = refiner.infer(explicit, chosen_preset) if infer_detail else []
    positive_phrases, positive_tokens = _fit(refiner, explicit + inferred, token_budget, {"user"}, "positive")

    # Negatives: yours, then the moved phrases, then the preset's, then the defaults.
    negative_phrases = refiner.phrases(negative, "user_negative", "negative")
    refiner.synonyms(moved, "negative")
    refiner.synonyms(negative_phrases, "negative")
    seen: set = set()
    negative_phrases = refiner.dedupe(negative_phrases + moved, "negative", seen)
    extra = []
    for item in (chosen_preset.negative if chosen_preset else ()):
        if item.text not in seen:
            seen.add(item.text)
            extra.append(_Phrase(item.text, item.text, "preset", refiner._next_order(), item.priority))
            refiner.note(ADDED, item.text, f"the preset {chosen_preset.name!r} guards against it", "preset",
                         "negative", "negative")
    for default in rules.negatives:
        if default.text in seen:
            continue
        asked = next((m for m in (rules.negative_unless[default.text].find(p.text) for p in explicit) if m), None)
        if asked is not None:
            refiner.note(SKIPPED, default.text, f"your prompt asks for {asked!r}", "default", "negative", "negative")
            continue
        seen.add(default.text)
        extra.append(_Phrase(default.text, default.text, "default", refiner._next_order(), default.priority))
        refiner.note(ADDED, default.text, "a known failure mode of generated talking heads", "default", "negative",
                     "negative")
    negative_phrases, negative_tokens = _fit(refiner, negative_phrases + extra, token_budget,
                                             {"user", "user_negative"}, "negative")

    separator = rules.separator
    user_tokens = clip_tokens.count_tokens(separator.join(p.render() for p in user_kept))
    _warn(refiner, prompt, explicit, user_kept, negative_phrases, user_tokens, positive_phrases, token_budget,
          infer_detail, negative_tokens)
    return RefinedPrompt(
        positive=separator.join(p.render() for p in positive_phrases),
        negative=separator.join(p.render() for p in negative_phrases),
        report=refiner.report, warnings=refiner.warnings, positive_tokens=positive_tokens,
        negative_tokens=negative_tokens, user_tokens=user_tokens, token_budget=token_budget, preset=preset_name,
        infer_detail=bool(infer_detail), source_prompt=prompt, source_negative=negative,
        rewritten_prompt=rewritten_text, rewriter=rewriter_name if rewritten_text is not None else "",
        rules_digest=rules.digest, rules_files=list(rules.files))


def _text_input(value, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(name, f"expected text, got {type(value).__name__}", "Give the prompt as a string.")
    return value


def _warn(refiner: _Refiner, prompt: str, explicit, user_kept, negative_phrases, user_tokens, positive_phrases,
          budget: int, infer_detail: bool, negative_tokens: int) -> None:
    warnings = refiner.warnings
    if not explicit:
        if not prompt.strip():
            warnings.append("the prompt is empty: " + ("the positive prompt holds inferred detail only" if infer_detail
                                                         else "with inferred detail off, the positive prompt is empty"))
        else:
            warnings.append("no words of the prompt are left for the positive prompt"
                            + ("; it holds inferred detail only" if infer_detail else ""))
    if user_tokens > budget:
        cut = _cut_point(refiner.rules.separator.join(p.render() for p in positive_phrases), budget)
        warnings.append(
            f"your own words take {user_tokens} CLIP tokens, over the budget of {budget} (start and end tokens "
            f"included); none of them were cut. An encoder that truncates (diffusers) ignores everything from "
            f"{cut!r} on; ComfyUI encodes the rest as further 77-token chunks, with less context. Shorten the prompt "
            "to keep control.")
    if negative_tokens > budget:
        warnings.append(f"your negative prompt takes {negative_tokens} CLIP tokens, over the budget of {budget}; "
                        "none of it was cut")
    letters = [c for c in prompt if _is_non_latin_letter(c)]
    if letters:
        warnings.append(f"the prompt has {len(letters)} letters outside the Latin alphabet: CLIP's vocabulary is "
                        "mostly English, so they cost more tokens and are understood less well, and the rules "
                        "only recognise descriptors a rules file lists")
    positive_texts = {p.text for p in explicit}
    both = [p.text for p in negative_phrases if p.source == "user_negative" and p.text in positive_texts]
    if both:
        warnings.append("in both the positive and the negative prompt: " + ", ".join(repr(t) for t in both))
