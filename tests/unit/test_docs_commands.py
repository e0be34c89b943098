"""Every `drboot …` command line in README.md and RUNBOOK.md parses with drboot's real options.

The docs are what an operator types on the worst day; a renamed option or a command that
was never written must fail here, not at 3 a.m. Each command line is taken from the two
files (inline code spans and fenced blocks, after a prompt, an env assignment, ``run:``
or a cron schedule), and parsed by the real click group of ``bootstrap.cli`` with
``make_context`` (resilient parsing off), sub-group by sub-group, down to the command:
an unknown command, an unknown option, a missing option value or a bad choice fails with
the file and line. Nothing is run.

Conventions the docs may use:
- placeholders (``SITE``, ``RUN_ID``, ``site.yaml``, ``K``) are ordinary arguments; the
  parse runs in an empty folder, absolute paths are moved below it, and a path an option
  wants to exist (``--kubeconfig K``) is made there, as a file or folder per the option;
- synopsis notation: ``[X]`` (X is parsed too), ``(A | B)`` (A is parsed), ``FILES…``;
- ``<(…)`` process substitution stands for a file; anything after ``|``, ``>``, ``&&``
  or ``;`` is another program and is not parsed;
- a bare mention of a command (``drboot resume``, with no argument) only has to exist;
  ``drboot`` alone, or ``drboot …``, names the program;
- A command that does not exist yet may be written only with ``<!-- future -->`` at the
  end of its line; this test then checks that it still does NOT parse, so the marker goes
  when the command lands. (Prefer prose to future command lines.)
"""

from __future__ import annotations

import os
import re
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from bootstrap.cli import cli
from tests.conftest import REPO

DOCS = ("README.md", "RUNBOOK.md")
FUTURE = "<!-- future -->"
_START = re.compile(r"(?:^|(?<=[\s;&|(/:`]))drboot(?=\s|$)")
_STOP = {"|", "||", "&&", ";", ">", ">>", "<", "2>&1", "2>", "&"}


@dataclass(frozen=True)
class DocLine:
    where: str  # file:line
    text: str  # the command line as written, from ``drboot``
    future: bool


def _commands_in(text: str) -> list[str]:
    """The ``drboot …`` command lines starting in ``text`` (one line of a doc)."""
    return [text[m.start() :] for m in _START.finditer(text)][:1]


def doc_lines() -> list[DocLine]:
    found: list[DocLine] = []
    for name in DOCS:
        fenced = False
        carried, start = "", 0
        for number, line in enumerate((REPO / name).read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced, carried = not fenced, ""
                continue
            future = FUTURE in line
            if fenced:
                found += [DocLine(f"{name}:{number}", c, future) for c in _commands_in(line)]
                continue
            if carried:  # a code span that went on over the line break
                line, carried = f"{carried} {line.strip()}", ""
            else:
                start = number
            if line.count("`") % 2 and line.strip():
                carried = line
                continue
            where = f"{name}:{start}"
            for span in line.split("`")[1::2]:  # the code spans of the line
                found += [DocLine(where, c, future) for c in _commands_in(span)]
    return found


def _argv(command: str) -> list[str]:
    """A doc's command line as the argument list drboot would get (after ``drboot``)."""
    text = command.replace(FUTURE, "").replace("\\|", "|")
    text = re.sub(r"<\([^)]*\)", "SITE", text)  # process substitution: a file
    text = re.sub(r"\(([^()|]+?)\s*\|[^()]*\)", r"\1", text)  # (A | B): A
    text = re.sub(r"\[([^\[\]]*)\]", r"\1", text)  # [X]: X
    text = text.replace("…", "").replace("...", "")
    tokens = shlex.split(text, comments=True)
    for i, token in enumerate(tokens):
        if token in _STOP or token.startswith((">", "2>")):
            tokens = tokens[:i]
            break
    assert tokens and tokens[0] == "drboot", command
    return tokens[1:]


def _rest(ctx: click.Context) -> list[str]:
    """What a group left for its sub-command (click 8 keeps the name apart; click 9 not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return [*ctx.protected_args, *ctx.args]
        except AttributeError:
            return list(ctx.args)


def parse(argv: list[str]) -> None:
    """Parse ``drboot ARGV`` down to its command; click's error if it does not parse.
    ``drboot`` alone (or ``drboot …``) names the program, which exists."""
    if not argv:
        return
    command: click.Command = cli
    name, args = "drboot", argv
    parent: click.Context | None = None
    try:
        while True:
            ctx = command.make_context(name, list(args), parent=parent, resilient_parsing=False)
            if not isinstance(command, click.Group):
                return
            rest = _rest(ctx)
            if not rest:
                raise click.UsageError("no command given", ctx=ctx)
            sub_name, sub, args = command.resolve_command(ctx, rest)
            assert sub is not None and sub_name is not None
            command, name, parent = sub, sub_name, ctx
    except click.exceptions.Exit as done:  # --help, --version
        if done.exit_code != 0:
            raise
    except click.MissingParameter:
        if args:  # arguments were given, and one is missing: a real mistake
            raise
        # a bare mention (``drboot resume``): the command exists, which is all it claims


def _moved(argv: list[str], folder: Path) -> list[str]:
    """``argv`` with absolute paths moved below ``folder`` (the test writes nothing else)."""
    return [str(folder / t.lstrip("/")) if t.startswith("/") and len(t) > 1 else t for t in argv]


def parse_with_placeholders(argv: list[str], folder: Path) -> None:
    """``parse``, making each placeholder path an option needs to exist as what the option
    asks for (a file, or a folder), as the parser reports it missing."""
    argv = _moved(argv, folder)
    for _ in range(len(argv) + 1):
        try:
            parse(argv)
            return
        except click.BadParameter as err:
            missing = re.search(r"'(.*)' does not exist", err.message)
            kind = getattr(err.param, "type", None)
            if missing is None or not isinstance(kind, click.Path):
                raise
            path = folder / missing.group(1)
            if kind.file_okay:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("")
            else:
                path.mkdir(parents=True)
    raise AssertionError(f"placeholders kept missing: {argv}")


LINES = doc_lines()


def test_the_docs_have_command_lines_to_check() -> None:
    files = {line.where.split(":")[0] for line in LINES}
    assert files == set(DOCS), files
    assert len(LINES) > 40


@pytest.mark.parametrize("line", LINES, ids=[f"{d.where} {d.text}" for d in LINES])
def test_a_documented_command_line_parses(
    line: DocLine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = _argv(line.text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRBOOT_STATE_DIR", raising=False)
    if line.future:
        with pytest.raises(click.UsageError):
            parse_with_placeholders(argv, tmp_path)
        pytest.fail(f"{line.where}: `{line.text}` parses now: remove its {FUTURE} marker")
    try:
        parse_with_placeholders(argv, tmp_path)
    except click.UsageError as err:
        raise AssertionError(
            f"{line.where}: `{line.text}` does not parse: {err.format_message()}"
        ) from None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("drboot upgrade fleet.yaml", "No such command"),
        ("drboot restore site.yaml --no-such-option", "No such option"),
        ("drboot escrow nosuch SITE", "No such command"),
        ("drboot restore site.yaml --until", "requires an argument"),
        ("drboot -o yaml status", "is not one of"),
        ("drboot schema --format html", "is not one of"),
        ("drboot resume RUN_ID extra", "unexpected extra argument"),
        ("drboot escrow backup site.yaml", "kubeconfig"),
    ],
)
def test_a_wrong_command_line_fails_the_check(
    text: str, error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(click.UsageError, match=error):
        parse(_argv(text))


def test_synopsis_notation_is_read_as_documented() -> None:
    assert _argv("drboot escrow export SITE --format main.key (--to FILE \\| --stdout)") == [
        "escrow", "export", "SITE", "--format", "main.key", "--to", "FILE",
    ]  # fmt: skip
    assert _argv("drboot escrow import SITE [FILES…]") == ["escrow", "import", "SITE", "FILES"]
    assert _argv("drboot restore <(git show origin/main:site.yaml)") == ["restore", "SITE"]
    assert _argv("drboot -o json restore s.yaml | jq .kind  # feed a bot") == [
        "-o", "json", "restore", "s.yaml",
    ]  # fmt: skip
    assert _commands_in("0 6 * * * /usr/local/bin/drboot escrow status S") == [
        "drboot escrow status S"
    ]
    assert _commands_in("run: drboot escrow verify site.yaml") == ["drboot escrow verify site.yaml"]
    assert _commands_in("drboot-lab and mydrboot run") == []
    assert os.sep == "/"
