"""Every `alarm ...` command the docs show names subcommands and options that exist.

The commands are read from the code spans and code blocks of README.md and docs/*.md and
checked against the argparse tree that `alarm` itself builds (in process, no subprocess).
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from alarm.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
_SPAN = re.compile(r"`([^`\n]+)`")
# `alarm ...` or `python -m alarm.cli ...`; not alarm.audio, src/alarm/, alarm-demo/, "alarm[dev]"
_COMMAND = re.compile(r"(?<![\w./\-\"'\[])alarm(?:\.cli)?[ \t]+(?=[\w\-{\[])")
_SEPARATORS = re.compile(r"\s(?:&&|\|\||;|\||>|<|2>)\s")
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(?:\.\.\.)?$")  # BENCH, NAME, AUDIO...


def snippets(text: str) -> list[str]:
    """Code blocks (continuation lines joined) and inline code spans of a Markdown page."""
    out = []
    for block in _BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            out.extend(_SPAN.findall(line) if "`" in line else [line])
    prose = _BLOCK.sub("", text)
    out.extend(span.replace("\\|", "|") for span in _SPAN.findall(prose))
    return out


def commands(text: str) -> list[list[str]]:
    """Argument lists (after `alarm`) of every `alarm` command in a page's code."""
    found = []
    for snippet in snippets(text):
        snippet = re.sub(r"(^|\s)#.*$", "", snippet)  # shell comment
        for match in _COMMAND.finditer(snippet):
            rest = _SEPARATORS.split(snippet[match.end() :])[0]
            try:
                tokens = shlex.split(rest)
            except ValueError:  # an unbalanced quote in prose: plain words
                tokens = rest.split()
            found.append(tokens)
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(token: str) -> list[str]:
    """`--a/--b`, `[--out`, `--x=1` -> the option names they spell."""
    names = []
    for part in token.strip("[](){},.;:").split("/"):
        name = part.split("=")[0].strip("[](){},.;:")
        if re.fullmatch(r"--?[A-Za-z][\w-]*", name):
            names.append(name)
    return names


def _alternatives(token: str) -> list[str]:
    """`{mmsu,mmau}`, `[list|install]`, `text|metadata` -> the words; else the token itself."""
    inner = token.strip("[](){}")
    for sep in (",", "|"):
        if sep in inner:
            return [w for w in inner.split(sep) if w]
    return [inner]


def problems(tokens: list[str], parser: argparse.ArgumentParser, path: str = "alarm") -> list[str]:
    """What in one command the parser does not know: subcommands, then options."""
    out: list[str] = []
    for i, token in enumerate(tokens):
        subs = _subcommands(parser)
        if token.startswith("-") or token.startswith("[-"):
            for name in _options(token):
                if name not in parser._option_string_actions:
                    out.append(f"`{path}` has no option {name}")
            continue
        if not subs:
            continue  # a positional or an option's value
        words = _alternatives(token)
        if all(w in subs for w in words):
            branches = words
        elif _PLACEHOLDER.match(token) or token in ("...", "[...]"):
            # `alarm eval BENCH --data ...`: each option must exist in some subcommand
            rest = tokens[i + 1 :]
            for name in {n for t in rest if t.startswith(("-", "[-")) for n in _options(t)}:
                if not any(name in p._option_string_actions for p in subs.values()):
                    out.append(f"no `{path} {token}` subcommand has option {name}")
            return out
        else:
            return [*out, f"`{path}` has no subcommand {token!r} (has: {', '.join(sorted(subs))})"]
        for word in branches:
            out.extend(problems(tokens[i + 1 :], subs[word], f"{path} {word}"))
        return out
    return out


def _documented() -> list[tuple[str, list[str]]]:
    return [(doc.relative_to(ROOT).as_posix(), c) for doc in DOCS for c in commands(doc.read_text(encoding="utf-8"))]


def test_the_docs_show_alarm_commands():
    found = _documented()
    assert len(found) > 100  # the extraction reads the pages (README and docs/)
    named = {tokens[0] for _, tokens in found if tokens}
    assert {"demo", "eval", "train", "corpus", "ask", "serve", "models", "features"} <= named


def test_every_documented_option_exists():
    parser = build_parser()
    failures = [
        f"{doc}: alarm {' '.join(tokens)}\n    {p}" for doc, tokens in _documented() for p in problems(tokens, parser)
    ]
    assert not failures, "documented commands the CLI does not accept:\n" + "\n".join(failures)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Run `alarm eval mmau --data D --no-such-flag 3`.", "`alarm eval mmau` has no option --no-such-flag"),
        (
            "```bash\nalarm train --preset x \\\n    --learning-rat 1e-4\n```",
            "`alarm train` has no option --learning-rat",
        ),
        ("`alarm evaluate mmau`", "`alarm` has no subcommand 'evaluate'"),
        ("| `alarm models [list\\|install\\|nuke]` |", "`alarm models` has no subcommand '[list|install|nuke]'"),
        ("`alarm eval BENCH --data D --bogus`", "no `alarm eval BENCH` subcommand has option --bogus"),
        ("`accelerate launch -m alarm.cli train --frobnicate`", "`alarm train` has no option --frobnicate"),
    ],
)
def test_a_wrong_command_in_a_doc_is_caught(text, expected):
    parser = build_parser()
    found = [p for tokens in commands(text) for p in problems(tokens, parser)]
    assert any(p.startswith(expected) for p in found), found


def test_right_commands_pass():
    parser = build_parser()
    text = (
        "`alarm eval {mmsu,mmau} --data DIR --preset NAME --out DIR [--engine vllm]`, "
        "`alarm -v corpus build --num-shards/--shard-index`, `alarm.generation`, src/alarm/demo, "
        '```\nalarm ask clip.wav "What is said? --not-an-option" --preset p  # --nor-this\n```'
    )
    assert [p for tokens in commands(text) for p in problems(tokens, parser)] == []
