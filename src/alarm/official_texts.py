"""The official ALARM repository's texts, read word for word from a local checkout.

Every text ``alarm`` sends to a model (evaluation prompts, the ALARM-E instructions, the
thinking-budget closing sentence, the corpus instructions) is this project's own wording by
default. ``--official-texts PATH`` (or ``ALARM_OFFICIAL_TEXTS=PATH``) names a checkout of the
official repository (github.com/Blinorot/ALARM); each text is then read from the official
file that defines it and used as written there. This project holds no copy of those texts.

The official files are Python scripts that need vLLM, hydra and GPUs to import, and running
someone else's code to read a string is a risk; so they are never imported or executed. Each
file is parsed with :mod:`ast` and a tiny reader evaluates only the statements that build
the text: string literals, f-strings, ``+``/``+=``, names bound earlier in the same
function, lists/tuples of those, and ``for`` loops over such lists (the rephrasing prompt's
few-shot examples are added in a loop). Anything else (a call, an attribute, an ``if``) is an
:class:`OfficialTextError` naming the file, the function, the line and the text, as is a
missing file, function or variable, or a text whose placeholders are not the expected ones:
a changed official file fails loudly instead of giving another text.

Where a text has per-request parts (the question, the option list, the member count), the
official f-string's expressions become named slots of a :class:`Template`; e.g. the MCQA
instruction's ``{question}`` and ``{options_list}`` become ``question`` and ``options``.

Where each text is defined (file, function, variable) is :data:`TEXTS`; the checkout's git
commit, whether the files read differ from it, and a hash of each text go into the settings
of every run that uses them (:meth:`OfficialTexts.settings`).
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_VAR = "ALARM_OFFICIAL_TEXTS"

#: The text groups each command reads (a command reads only what it uses, so a checkout
#: missing the corpus scripts still evaluates).
GROUPS = ("eval", "chat", "ensemble", "thinking", "corpus")


class OfficialTextError(ValueError):
    """An official text that cannot be read; the message names the file and the text."""


@dataclass(frozen=True)
class Slot:
    """A per-request part of a template (``{question}`` in the official f-string)."""

    name: str


@dataclass(frozen=True)
class Template:
    """A text with named slots, kept as literal pieces and :class:`Slot` s in order."""

    parts: tuple[str | Slot, ...]

    def __add__(self, other: Template) -> Template:
        return Template(self.parts + other.parts)

    @property
    def slots(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parts if isinstance(p, Slot))

    def render(self, **values: Any) -> str:
        """The text with every slot filled; a missing or unknown slot is an error."""
        if set(values) != self.slots:
            raise KeyError(f"template slots are {sorted(self.slots)}, got {sorted(values)}")
        return "".join(str(values[p.name]) if isinstance(p, Slot) else p for p in self.parts)

    @property
    def text(self) -> str:
        """The text of a template without slots."""
        if self.slots:
            raise KeyError(f"this text has slots {sorted(self.slots)}; use render()")
        return "".join(p for p in self.parts if isinstance(p, str))

    def format_string(self) -> str:
        """The template as a ``str.format`` string (literal braces doubled)."""
        return "".join(
            "{" + p.name + "}" if isinstance(p, Slot) else p.replace("{", "{{").replace("}", "}}") for p in self.parts
        )


@dataclass(frozen=True)
class TextSpec:
    """Where an official text is defined and what its slots are.

    ``target`` names the variable assigned the text inside ``function`` (its one assignment,
    or with ``augmented`` its one ``+=``); ``None`` means the function's return value, read by
    running the function's body through the reader with each parameter named in ``slots``
    bound to a slot. ``slots`` maps the official source of an expression (``ast.unparse``
    form: ``"i + 1"``, ``"len(feature_extractor)"``, or a parameter name) to a slot name.
    ``replaces``: the text is instead what the function's one ``x.replace(replaces, TEXT)``
    call puts in place of that literal (the tag names the official rephrasing renames the
    think tags to; an exchange format, read rather than written here).
    """

    file: str
    function: str
    target: str | None = None
    slots: Mapping[str, str] = field(default_factory=dict)
    augmented: bool = False
    replaces: str | None = None
    used_for: str = ""


_MCQA = "generate_vllm_mcqa.py"
_OPEN = "generate_vllm.py"
_CORPUS = "scripts/alarm/generate_responses.py"

#: Every official text alarm can use, by name (``<group>.<text>``).
TEXTS: dict[str, TextSpec] = {
    "eval.system": TextSpec(_MCQA, "get_system_prompt", used_for="multiple-choice evaluation: system prompt"),
    "eval.instruction": TextSpec(
        _MCQA,
        "get_main_prompt",
        "main_prompt",
        {"question": "question", "options_list": "options"},
        used_for="multiple-choice evaluation: the user text around the question and options",
    ),
    "eval.option": TextSpec(
        _MCQA,
        "get_main_prompt",
        "option",
        {"i": "index", "option": "text"},
        used_for="multiple-choice evaluation: one option line",
    ),
    "chat.system": TextSpec(_OPEN, "get_system_prompt", used_for="open questions (AIR-Bench chat): system prompt"),
    "ensemble.intro": TextSpec(
        _MCQA,
        "get_response",
        "extra_input_str",
        {"len(feature_extractor)": "count"},
        used_for="ALARM-E: the instruction before the members' audio",
    ),
    "ensemble.header": TextSpec(
        _MCQA,
        "get_response",
        "input_start_str",
        {"i + 1": "index", "len(feature_extractor)": "count"},
        used_for="ALARM-E: the header before member <index>'s audio",
    ),
    "ensemble.separator": TextSpec(
        _MCQA, "get_response", "inputs_main_str", used_for="ALARM-E: the text after each member's audio"
    ),
    "thinking.closing": TextSpec(
        _MCQA,
        "get_response",
        "reasoning_response",
        augmented=True,
        used_for="thinking budget: what is appended to unfinished reasoning (it ends the reasoning itself)",
    ),
    "corpus.respond.system": TextSpec(_CORPUS, "get_system_prompt", used_for="corpus R0: system prompt"),
    "corpus.respond.user": TextSpec(
        _CORPUS,
        "get_main_prompt",
        slots={"audio_description": "metadata", "prompt": "prompt"},
        used_for="corpus R0: the metadata and the prompt",
    ),
    "corpus.rephrase.system": TextSpec(
        _CORPUS, "get_rephrased_system_prompt", used_for="corpus rephrasing: rules and few-shot examples"
    ),
    "corpus.rephrase.user": TextSpec(
        _CORPUS,
        "get_rephrased_main_prompt",
        "main_prompt",
        {"response": "response"},
        used_for="corpus rephrasing: the response to rewrite",
    ),
    "corpus.rephrase.think_open": TextSpec(
        _CORPUS,
        "get_rephrased_main_prompt",
        replaces="<think>",
        used_for="corpus rephrasing: what <think> is renamed to in the response sent (and back in the reply)",
    ),
    "corpus.rephrase.think_end": TextSpec(
        _CORPUS,
        "get_rephrased_main_prompt",
        replaces="</think>",
        used_for="corpus rephrasing: what </think> is renamed to in the response sent (and back in the reply)",
    ),
    "corpus.rephrase.closing": TextSpec(
        _CORPUS,
        "get_rephrased_response",
        "reasoning_response",
        augmented=True,
        used_for="corpus rephrasing: the thinking budget's closing sentence (it ends the reasoning itself)",
    ),
}


def group_of(name: str) -> str:
    return name.split(".", 1)[0]


# -- the reader ----------------------------------------------------------------------------------


class _Unreadable(Exception):
    """A construct the reader does not evaluate (turned into an OfficialTextError by the caller)."""

    def __init__(self, node: ast.AST, what: str) -> None:
        super().__init__(f"line {getattr(node, 'lineno', '?')}: {what}")


Value = Any  # Template | int | tuple of values


def _expr(node: ast.expr, env: Mapping[str, Value], slots: Mapping[str, str]) -> Value:
    source = ast.unparse(node)
    if source in slots:
        return Template((Slot(slots[source]),))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return Template((node.value,))
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = Template(())
        for part in node.values:
            if isinstance(part, ast.FormattedValue):
                if part.conversion != -1 or part.format_spec is not None:
                    raise _Unreadable(part, f"formatted value {ast.unparse(part)!r}")
                value = _expr(part.value, env, slots)
                out = out + (value if isinstance(value, Template) else Template((str(value),)))
            else:
                out = out + _expr(part, env, slots)
        return out
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise _Unreadable(node, f"name {node.id!r} is not a text defined before it")
        return env[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _expr(node.left, env, slots), _expr(node.right, env, slots)
        if type(left) is not type(right) or not isinstance(left, (Template, int)):
            raise _Unreadable(node, f"'+' of {type(left).__name__} and {type(right).__name__}")
        return left + right
    if isinstance(node, (ast.List, ast.Tuple)):
        return tuple(_expr(e, env, slots) for e in node.elts)
    raise _Unreadable(node, f"{type(node).__name__} {source[:60]!r}")


def _bind(target: ast.expr, value: Value, env: dict[str, Value]) -> None:
    if isinstance(target, ast.Name):
        env[target.id] = value
    elif isinstance(target, ast.Tuple) and isinstance(value, tuple) and len(value) == len(target.elts):
        for t, v in zip(target.elts, value):
            _bind(t, v, env)
    else:
        raise _Unreadable(target, f"assignment to {ast.unparse(target)!r}")


_DONE = object()


def _run(body: list[ast.stmt], env: dict[str, Value]) -> Value:
    """Run a function body of text-building statements; the returned value, or _DONE."""
    for stmt in body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring or a bare string
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            _bind(stmt.targets[0], _expr(stmt.value, env, {}), env)
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, ast.Add) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
            if name not in env:
                raise _Unreadable(stmt, f"'+=' to {name!r} before it is assigned")
            env[name] = _expr(ast.BinOp(ast.Name(name), ast.Add(), stmt.value), env, {})
        elif isinstance(stmt, ast.For) and not stmt.orelse:
            items = _expr(stmt.iter, env, {})
            if not isinstance(items, tuple):
                raise _Unreadable(stmt, "a loop over something other than a list of texts")
            for item in items:
                _bind(stmt.target, item, env)
                result = _run(stmt.body, env)
                if result is not _DONE:
                    return result
        elif isinstance(stmt, ast.Return) and stmt.value is not None:
            return _expr(stmt.value, env, {})
        else:
            raise _Unreadable(stmt, f"statement {type(stmt).__name__} {ast.unparse(stmt).splitlines()[0][:60]!r}")
    return _DONE


def _function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _assignment(function: ast.FunctionDef, spec: TextSpec) -> ast.expr:
    kind = ast.AugAssign if spec.augmented else ast.Assign
    found = []
    for node in ast.walk(function):
        if isinstance(node, kind):
            targets = [node.target] if isinstance(node, ast.AugAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == spec.target for t in targets):
                found.append(node.value)
    if len(found) != 1:
        how = "'+='" if spec.augmented else "assignment"
        raise _Unreadable(function, f"{len(found)} {how}s to {spec.target!r} (expected one)")
    return found[0]


def _replacement(function: ast.FunctionDef, literal: str) -> ast.expr:
    """The new-text argument of the function's one ``x.replace(literal, new)`` call."""
    found = [
        node.args[1]
        for node in ast.walk(function)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "replace"
        and len(node.args) == 2
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == literal
    ]
    if len(found) != 1:
        raise _Unreadable(function, f"{len(found)} .replace({literal!r}, ...) calls (expected one)")
    return found[0]


def read_text(root: Path, name: str, spec: TextSpec, tree: ast.Module | None = None) -> Template:
    """One official text from the checkout at ``root`` (see the module docstring)."""
    path = root / spec.file
    inside = f".{spec.target}" if spec.target else f" .replace({spec.replaces!r})" if spec.replaces else ""
    where = f"official text {name!r} ({spec.file}, {spec.function}{inside})"
    if tree is None:
        tree = _parse(path, name)
    function = _function(tree, spec.function)
    if function is None:
        raise OfficialTextError(f"{path}: no function {spec.function!r}, where {where} is defined; is it a checkout?")
    try:
        if spec.replaces is not None:
            value = _expr(_replacement(function, spec.replaces), {}, {})
        elif spec.target is None:
            params = [a.arg for a in function.args.args]
            env: dict[str, Value] = {p: Template((Slot(spec.slots[p]),)) for p in params if p in spec.slots}
            value = _run(function.body, env)
        else:
            value = _expr(_assignment(function, spec), {}, spec.slots)
    except _Unreadable as err:
        raise OfficialTextError(f"{path}: cannot read {where}: {err}; the official file has changed") from None
    if not isinstance(value, Template):
        raise OfficialTextError(f"{path}: {where} is not a text ({type(value).__name__})")
    expected = frozenset(spec.slots.values())
    if value.slots != expected:
        raise OfficialTextError(
            f"{path}: {where} has slots {sorted(value.slots)}, expected {sorted(expected)}; "
            "the official file has changed"
        )
    return value


def _parse(path: Path, name: str) -> ast.Module:
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OfficialTextError(f"{path}: missing; it defines the official text {name!r}") from None
    except OSError as err:
        raise OfficialTextError(
            f"{path}: cannot be read ({err.strerror}); it defines the official text {name!r}"
        ) from None
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as err:
        raise OfficialTextError(
            f"{path}: not valid Python (line {err.lineno}); it defines the official text {name!r}"
        ) from None


# -- the texts of a checkout -----------------------------------------------------------------------


@dataclass(frozen=True)
class OfficialTexts:
    """Official texts read from the checkout at ``root`` (``commit``: its git HEAD, if any)."""

    root: Path
    commit: str | None
    modified: bool  # the files read differ from ``commit`` (uncommitted changes)
    texts: Mapping[str, Template]

    def template(self, name: str) -> Template:
        try:
            return self.texts[name]
        except KeyError:
            raise KeyError(f"official text {name!r} was not read; read: {sorted(self.texts)}") from None

    def text(self, name: str) -> str:
        return self.template(name).text

    def settings(self) -> dict[str, Any]:
        """What a run records: where the texts came from, and a hash of each one used."""
        return {
            "source": "official",
            "path": str(self.root),
            "commit": self.commit,
            "modified": self.modified,
            "texts": {
                name: {
                    "file": TEXTS[name].file,
                    "sha256": hashlib.sha256(t.format_string().encode("utf-8")).hexdigest()[:16],
                }
                for name, t in sorted(self.texts.items())
            },
        }


#: What a run records when it uses this project's own wording.
OURS: dict[str, Any] = {"source": "ours"}


def texts_settings(texts: OfficialTexts | None) -> dict[str, Any]:
    return dict(OURS) if texts is None else texts.settings()


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def load(path: str | os.PathLike[str], groups: Iterable[str] = GROUPS) -> OfficialTexts:
    """Read the official texts of ``groups`` from the checkout at ``path``."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise OfficialTextError(
            f"{root}: not a folder; --official-texts / {ENV_VAR} names a checkout of Blinorot/ALARM"
        )
    groups = tuple(groups)
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown text groups {sorted(unknown)}; known: {GROUPS}")
    names = [n for n in TEXTS if group_of(n) in groups]
    trees: dict[str, ast.Module] = {}
    texts = {}
    for name in names:
        spec = TEXTS[name]
        if spec.file not in trees:
            trees[spec.file] = _parse(root / spec.file, name)
        texts[name] = read_text(root, name, spec, trees[spec.file])
    commit = _git(root, "rev-parse", "HEAD") if (root / ".git").exists() else None
    modified = bool(_git(root, "status", "--porcelain", "--", *sorted(trees))) if commit else False
    return OfficialTexts(root, commit, modified, texts)


def resolve(path: str | os.PathLike[str] | None, groups: Iterable[str] = GROUPS) -> OfficialTexts | None:
    """The official texts a command uses: ``path`` (the ``--official-texts`` option) if given,
    else ``$ALARM_OFFICIAL_TEXTS`` if set and non-empty, else ``None`` (this project's wording)."""
    chosen = path if path is not None else (os.environ.get(ENV_VAR) or None)
    return None if chosen is None else load(chosen, groups)


def add_argument(parser: Any) -> None:
    """``--official-texts PATH`` for the commands that send texts to a model."""
    parser.add_argument(
        "--official-texts",
        default=None,
        metavar="PATH",
        help=f"a checkout of the official ALARM repository: use its texts word for word (default: ours; "
        f"also ${ENV_VAR}; docs/fidelity.md)",
    )


def apply_to_model(model: Any, texts: OfficialTexts | None) -> Any:
    """Give an ALARM-E model the official instructions around its members' audio.

    Official layout of the user turn (``generate_vllm_mcqa.py``, ``get_response``): the intro,
    then per member its header and its audio followed by the separator, then the question.
    Other models have no text of their own; they are returned unchanged.
    """
    if texts is None:
        return model
    from alarm.modeling.ensemble import AlarmEnsemble, EnsembleInstructions

    if isinstance(model, AlarmEnsemble):
        n = len(model.members)
        header, separator = texts.template("ensemble.header"), texts.text("ensemble.separator")
        headers = tuple((separator if k else "") + header.render(index=k + 1, count=n) for k in range(n))
        intro = texts.template("ensemble.intro").render(count=n)
        model.instructions = EnsembleInstructions(intro=intro, headers=headers, outro=separator)
    return model
