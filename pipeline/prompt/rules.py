"""The PromptRefiner's rules: a data file users can extend, never code.

`data/prompt_rules.toml` ships the vocabulary (canonical descriptors, synonyms), conflict groups,
what is inferred for a talking-head shot and its priority, presets, default negatives and the content
policy; its header documents the format. Users merge their own TOML files over it (later files win):

1. `$TALKINGHEAD_CONFIG_DIR/prompt_rules.toml` (default `~/.config/talkinghead/prompt_rules.toml`),
2. the files named in `$TALKINGHEAD_PROMPT_RULES` (separated by `os.pathsep`),
3. files passed explicitly (the node's `rules_file`, the CLI's `--rules`).

Merging: tables merge key by key; lists of words extend (ours first, duplicates dropped), except
`infer`, which replaces; `[[descriptor]]` and `[[negative]]` entries merge by `text`, `[[policy.rule]]`
entries by `name`. The shipped policy rules are locked: a user file can add terms and rules and
disable its own rules, never weaken the shipped ones.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

from ..core.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SHIPPED_RULES_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "prompt_rules.toml")
#: Extra rules files, separated by os.pathsep, merged after the user's config-folder file.
RULES_ENV_VAR = "TALKINGHEAD_PROMPT_RULES"
#: The rules file looked for in the user's config folder (see core.config_dir.default_config_dir).
USER_RULES_FILENAME = "prompt_rules.toml"
#: In a policy term list: a capitalised first and last name, as typed ("Jane Doe").
NAME_TERM = "<NAME>"

_KEYED_LISTS = {("descriptor",): "text", ("negative",): "text", ("policy", "rule"): "name"}
_REPLACED_LISTS = {"infer"}
_NAME_PATTERN = re.compile(r"(?<![\w])[A-Z][a-z'’\-]+(?:[ \t]+(?:[A-Z]\.|[A-Z][a-z'’\-]+))+(?![\w])")


# ---- the compiled rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class InferItem:
    """A descriptor added when the prompt leaves its category unsaid."""

    text: str
    priority: int


@dataclass(frozen=True)
class Category:
    """What a talking-head shot needs: framing, lighting, lens, ... (order = the order text is added)."""

    name: str
    priority: int
    infer: tuple[InferItem, ...]
    why: str
    detect: tuple[str, ...]


@dataclass(frozen=True)
class Descriptor:
    """A canonical descriptor, the synonyms rewritten to it and the words that also mean it."""

    text: str
    category: str
    synonyms: tuple[str, ...] = ()
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preset:
    """A look: replaces categories' inferred text and adds negatives."""

    name: str
    description: str
    infer: dict
    negative: tuple[InferItem, ...]


@dataclass(frozen=True)
class DefaultNegative:
    """A negative for a known failure mode, left out when the positive prompt names an `unless` term."""

    text: str
    priority: int
    unless: tuple[str, ...]


@dataclass(frozen=True)
class PolicyRule:
    """Refuse a prompt that holds a term of every list named in `all`."""

    name: str
    all: tuple[str, ...]
    message: str
    locked: bool


class TermMatcher:
    """Finds rule terms in normalised (lower-case) text at word boundaries.

    Terms are literal words or phrases; `*` at either end matches any letters or digits there;
    `re:` starts a regular expression. Longer literal terms win over shorter ones at one position.
    """

    def __init__(self, terms: Iterable[str]):
        patterns = []
        for term in dict.fromkeys(terms):
            if term.startswith("re:"):
                patterns.append(f"(?:{term[3:]})")
            elif term != NAME_TERM:
                core = re.escape(term.strip("*").lower())
                patterns.append(("\\w*" if term.startswith("*") else "") + core + ("\\w*" if term.endswith("*") and len(term) > 1 else ""))
        literal = sorted(patterns, key=lambda p: (-len(p), p))
        self.regex = re.compile(r"(?<!\w)(?:" + "|".join(literal) + r")(?!\w)", re.IGNORECASE) if literal else None
        self.names = NAME_TERM in terms

    def find(self, text: str, original: str = "") -> Optional[str]:
        """The first term found in `text` (or a name in `original`, as typed), else None."""
        if self.regex is not None:
            match = self.regex.search(text)
            if match:
                return match.group(0)
        if self.names and original:
            match = _NAME_PATTERN.search(original)
            if match:
                return match.group(0)
        return None


@dataclass
class PromptRules:
    """The merged, validated rules the refiner runs on. Build with `load_rules()`."""

    separator: str
    stopwords: frozenset
    negation_prefixes: tuple[str, ...]
    categories: tuple[Category, ...]
    descriptors: dict  # canonical text -> Descriptor
    conflicts: dict  # group -> tuple of canonical texts
    presets: dict  # name -> Preset
    negatives: tuple[DefaultNegative, ...]
    policy_terms: dict  # list name -> tuple of terms
    policy_rules: tuple[PolicyRule, ...]
    files: tuple[str, ...]
    digest: str
    raw: dict = field(repr=False, default_factory=dict)

    def __post_init__(self):
        self.term_to_descriptor: dict[str, tuple[Descriptor, str]] = {}
        for descriptor in self.descriptors.values():
            for kind, terms in (("canonical", (descriptor.text,)), ("synonym", descriptor.synonyms),
                                ("also", descriptor.also)):
                for term in terms:
                    key = term.lower()
                    previous = self.term_to_descriptor.get(key)
                    if previous is not None and previous[0].text != descriptor.text:
                        raise InputError("prompt rules", f"the term {term!r} belongs to both descriptors "
                                         f"{previous[0].text!r} and {descriptor.text!r}",
                                         "Keep each word in one descriptor (text, synonyms or also) only.")
                    self.term_to_descriptor[key] = (descriptor, kind)
        alternatives = sorted(self.term_to_descriptor, key=lambda t: (-len(t), t))
        self.descriptor_regex = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, alternatives)) + r")(?!\w)") \
            if alternatives else None
        self.group_of = {text: group for group, members in self.conflicts.items() for text in members}
        self.category_detect = {c.name: TermMatcher(c.detect) for c in self.categories}
        self.negative_unless = {n.text: TermMatcher(n.unless) for n in self.negatives}
        self.policy_matchers = {name: TermMatcher(terms) for name, terms in self.policy_terms.items()}

    def find_descriptors(self, text: str) -> list[tuple[int, int, Descriptor, str]]:
        """(start, end, descriptor, kind) of every descriptor term in normalised text, left to right."""
        if self.descriptor_regex is None:
            return []
        return [(m.start(), m.end(), *self.term_to_descriptor[m.group(0)])
                for m in self.descriptor_regex.finditer(text)]

    def preset_names(self) -> list[str]:
        return list(self.presets)


# ---- loading and merging -------------------------------------------------------------------------


def _read_toml(path: str, input_name: str) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise InputError(input_name, f"no rules file at {path!r}",
                         "Give the path of an existing TOML file (see pipeline/prompt/data/prompt_rules.toml).") from None
    except OSError as exc:
        raise InputError(input_name, f"cannot read {path!r} ({exc.strerror or exc})",
                         "Check the path and its permissions.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(input_name, f"{path!r} is not valid TOML ({exc})",
                         "Fix the syntax; pipeline/prompt/data/prompt_rules.toml shows the format.") from exc


def _merge(base: Any, over: Any, path: tuple = ()) -> Any:
    """`over` merged onto `base` (see the module docstring)."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge(base[key], value, path + (key,)) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(over, list):
        key_name = _KEYED_LISTS.get(path)
        if key_name is not None:
            merged_list = [dict(entry) for entry in base]
            index = {entry.get(key_name): i for i, entry in enumerate(merged_list) if isinstance(entry, dict)}
            for entry in over:
                if isinstance(entry, dict) and entry.get(key_name) in index:
                    i = index[entry[key_name]]
                    merged_list[i] = _merge(merged_list[i], entry, path + ("[]",))
                else:
                    index[entry.get(key_name) if isinstance(entry, dict) else None] = len(merged_list)
                    merged_list.append(copy.deepcopy(entry))
            return merged_list
        if any(part in _REPLACED_LISTS for part in path):
            return copy.deepcopy(over)
        if all(isinstance(v, str) for v in base + over):
            return list(dict.fromkeys(base + over))
        return copy.deepcopy(over)
    return copy.deepcopy(over)


def _check_locked(base: dict, over: dict, path: str) -> None:
    """A user file may not change or disable the locked (shipped) policy rules."""
    locked = {r.get("name") for r in base.get("policy", {}).get("rule", []) if r.get("locked")}
    for rule in over.get("policy", {}).get("rule", []) or []:
        if isinstance(rule, dict) and rule.get("name") in locked:
            raise InputError("prompt rules", f"{path!r} redefines the locked policy rule {rule.get('name')!r}",
                             "Add terms to its lists under [policy.terms], or add a rule with another name.")
    for name in over.get("policy", {}).get("disable", []) or []:
        if name in locked:
            raise InputError("prompt rules", f"{path!r} disables the locked policy rule {name!r}",
                             "The shipped policy rules cannot be turned off; only rules you added can.")


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputError("prompt rules", f"{where} should be text, got {type(value).__name__}",
                         "Quote it as a TOML string.")
    return value


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError("prompt rules", f"{where} should be a list of texts", 'Write it as ["one", "two"].')
    return tuple(v.strip() for v in value if v.strip())


def _infer_items(value: Any, default_priority: int, where: str) -> tuple[InferItem, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        raise InputError("prompt rules", f"{where} should be a list", 'Write it as ["text", {text = "...", priority = 10}].')
    items = []
    for entry in value:
        if isinstance(entry, str):
            items.append(InferItem(entry.strip().lower(), default_priority))
        elif isinstance(entry, dict) and isinstance(entry.get("text"), str):
            priority = entry.get("priority", default_priority)
            if not isinstance(priority, int) or isinstance(priority, bool):
                raise InputError("prompt rules", f"{where}: priority of {entry['text']!r} should be a whole number",
                                 "Use e.g. priority = 40 (higher is kept longer).")
            items.append(InferItem(entry["text"].strip().lower(), priority))
        else:
            raise InputError("prompt rules", f"{where}: entry {entry!r} is neither text nor {{text = ...}}",
                             'Write entries as "text" or { text = "...", priority = 10 }.')
    return tuple(i for i in items if i.text)


def _priority(value: Any, default: int, where: str) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError("prompt rules", f"{where} should be a whole number", "Use e.g. priority = 40.")
    return value


def compile_rules(raw: dict, files: tuple[str, ...] = ()) -> PromptRules:
    """Validates merged raw rules and builds the matchers."""
    settings = raw.get("settings", {})
    categories = []
    for name, entry in (raw.get("categories") or {}).items():
        where = f"categories.{name}"
        priority = _priority(entry.get("priority"), 50, where + ".priority")
        categories.append(Category(name=name, priority=priority,
                                   infer=_infer_items(entry.get("infer"), priority, where + ".infer"),
                                   why=_str(entry.get("why", ""), where + ".why"),
                                   detect=_str_list(entry.get("detect"), where + ".detect")))
    descriptors: dict[str, Descriptor] = {}
    for i, entry in enumerate(raw.get("descriptor") or []):
        text = _str(entry.get("text"), f"descriptor #{i + 1}.text").strip().lower()
        descriptors[text] = Descriptor(
            text=text, category=_str(entry.get("category", ""), f"descriptor {text!r}.category"),
            synonyms=tuple(s.lower() for s in _str_list(entry.get("synonyms"), f"descriptor {text!r}.synonyms")),
            also=tuple(s.lower() for s in _str_list(entry.get("also"), f"descriptor {text!r}.also")))
    conflicts = {}
    for group, members in (raw.get("conflicts") or {}).items():
        members = tuple(m.lower() for m in _str_list(members, f"conflicts.{group}"))
        unknown = [m for m in members if m not in descriptors]
        if unknown:
            raise InputError("prompt rules", f"conflicts.{group} names {unknown} which are not descriptors",
                             "Add a [[descriptor]] with that text, or fix the spelling.")
        conflicts[group] = members
    category_names = {c.name for c in categories}
    presets = {}
    for name, entry in (raw.get("presets") or {}).items():
        infer = {}
        for category, items in (entry.get("infer") or {}).items():
            if category not in category_names:
                raise InputError("prompt rules", f"presets.{name}.infer.{category}: no such category",
                                 f"Use one of {sorted(category_names)}, or add [categories.{category}].")
            default = next(c.priority for c in categories if c.name == category)
            infer[category] = _infer_items(items, default, f"presets.{name}.infer.{category}")
        presets[name] = Preset(name=name, description=_str(entry.get("description", ""), f"presets.{name}.description"),
                               infer=infer, negative=_infer_items(entry.get("negative"), 50, f"presets.{name}.negative"))
    negatives = []
    for i, entry in enumerate(raw.get("negative") or []):
        if entry.get("enabled", True) is False:
            continue
        text = _str(entry.get("text"), f"negative #{i + 1}.text").strip().lower()
        negatives.append(DefaultNegative(text=text, priority=_priority(entry.get("priority"), 50, f"negative {text!r}.priority"),
                                         unless=_str_list(entry.get("unless"), f"negative {text!r}.unless") or (text,)))
    policy = raw.get("policy") or {}
    terms = {name: _str_list(value, f"policy.terms.{name}") for name, value in (policy.get("terms") or {}).items()}
    disabled = set(_str_list(policy.get("disable"), "policy.disable"))
    rules = []
    for i, entry in enumerate(policy.get("rule") or []):
        name = _str(entry.get("name"), f"policy.rule #{i + 1}.name")
        needs = _str_list(entry.get("all"), f"policy rule {name!r}.all")
        unknown = [n for n in needs if n not in terms]
        if not needs or unknown:
            raise InputError("prompt rules", f"policy rule {name!r} needs term lists {unknown or '(none given)'} "
                             "that are not under [policy.terms]", "Name lists defined under [policy.terms] in `all`.")
        if name in disabled and not entry.get("locked"):
            continue
        rules.append(PolicyRule(name=name, all=needs, message=_str(entry.get("message", ""), f"policy rule {name!r}.message"),
                                locked=bool(entry.get("locked", False))))
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    return PromptRules(
        separator=_str(settings.get("separator", ", "), "settings.separator"),
        stopwords=frozenset(w.lower() for w in _str_list(settings.get("stopwords"), "settings.stopwords")),
        negation_prefixes=tuple(w.lower() for w in _str_list(settings.get("negation_prefixes"), "settings.negation_prefixes")),
        categories=tuple(categories), descriptors=descriptors, conflicts=conflicts, presets=presets,
        negatives=tuple(negatives), policy_terms=terms, policy_rules=tuple(rules), files=files, digest=digest, raw=raw)


def user_rules_files() -> list[str]:
    """The user's rules files: the config folder's prompt_rules.toml (if present), then
    $TALKINGHEAD_PROMPT_RULES (each must exist)."""
    from ..core.config_dir import default_config_dir

    files = []
    in_config = os.path.join(default_config_dir(), USER_RULES_FILENAME)
    if os.path.isfile(in_config):
        files.append(in_config)
    for path in os.environ.get(RULES_ENV_VAR, "").split(os.pathsep):
        path = path.strip()
        if not path:
            continue
        if not os.path.isfile(path):
            raise InputError(RULES_ENV_VAR, f"names {path!r}, which is not a file",
                             "Fix the path or unset the variable.")
        files.append(os.path.abspath(path))
    return files


_cache: dict = {}


def load_rules(extra_files: Union[str, os.PathLike, Iterable[Union[str, os.PathLike]], None] = None, *,
               include_user: bool = True, input_name: str = "rules_file") -> PromptRules:
    """The shipped rules with the user's files (when `include_user`) and `extra_files` merged over them.

    Cached per list of files and their modification times, so an edited file is re-read.
    """
    if extra_files is None:
        extra = []
    elif isinstance(extra_files, (str, os.PathLike)):
        extra = [os.fspath(extra_files)] if os.fspath(extra_files).strip() else []
    else:
        extra = [os.fspath(f) for f in extra_files if os.fspath(f).strip()]
    files = [SHIPPED_RULES_PATH] + (user_rules_files() if include_user else []) + [os.path.abspath(f) for f in extra]
    key = []
    for path in files:
        try:
            key.append((path, os.stat(path).st_mtime_ns))
        except OSError:
            key.append((path, None))
    key = tuple(key)
    if key in _cache:
        return _cache[key]
    raw = _read_toml(SHIPPED_RULES_PATH, "shipped prompt rules")
    for path in files[1:]:
        name = input_name if path in [os.path.abspath(f) for f in extra] else "prompt rules"
        over = _read_toml(path, name)
        _check_locked(raw, over, path)
        raw = _merge(raw, over)
    rules = compile_rules(raw, tuple(files))
    if len(_cache) > 32:
        _cache.clear()
    _cache[key] = rules
    return rules
