"""The fenced code blocks of the project's Markdown, as tests/test_docs.py runs them.

Collected: every ```bash, ```sh, ```console and ```python block of README.md, docs/*.md,
examples/**/*.md and benchmarks/README.md (other languages, e.g. ```c, are not run).
HTML comments right before a block's fence (blank lines between are allowed) direct it:

    <!-- docs-test: skip-run REASON -->      checked for syntax and flags only, never run;
                                             REASON says why (a GPU, TensorRT, a network,
                                             minutes, a file of the user's) and is required
    <!-- docs-test: expect-exit N -->        the block (its last command) exits N, not 0
    <!-- docs-test: expect-file PATH... -->  these paths exist after the block ran
    <!-- docs-test: expect-json KEY... -->   its stdout is one JSON object with these keys

A ```console block is shell with ``$ `` prompts: the prompted lines are the commands, the
others are the output shown. Shell blocks run as one ``bash -e -o pipefail`` script, Python
blocks in a fresh interpreter, both in the demo's working folder (tests/test_docs.py).
Flags: every ``--flag`` given to an ``ocr-*`` command or a ``python benchmarks/NAME.py``
script must be listed in that command's ``--help`` (skipped blocks too).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHELL = ("bash", "sh", "console")
LANGUAGES = (*SHELL, "python")
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(?P<name>[a-z-]+)\s*(?P<args>.*?)\s*-->")
DIRECTIVES = ("skip-run", "expect-exit", "expect-file", "expect-json")


@dataclass
class Block:
    """One fenced block and what its page says about it."""

    page: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    skip: str | None = None  # the reason it is not run
    expect_exit: int = 0
    expect_files: list[str] = field(default_factory=list)
    expect_json: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def shell(self) -> bool:
        return self.language in SHELL

    def script(self) -> str:
        """The code to run: a console block's prompted commands, else the text."""
        if self.language != "console":
            return self.text
        lines, continued = [], False
        for line in self.text.splitlines():
            if line.startswith("$ ") or continued:
                command = line[2:] if line.startswith("$ ") and not continued else line
                lines.append(command)
                continued = command.rstrip().endswith("\\")
        return "\n".join(lines) + "\n"


def pages(root: Path = ROOT) -> list[Path]:
    """The Markdown pages whose blocks run."""
    found = [root / "README.md", *sorted((root / "docs").glob("*.md")),
             *sorted((root / "examples").rglob("*.md")), root / "benchmarks" / "README.md"]
    return [p for p in found if p.is_file()]


def parse(text: str, page: str) -> list[Block]:
    """The runnable blocks of one page; a malformed directive raises ValueError."""
    blocks: list[Block] = []
    lines = text.splitlines()
    pending: list[tuple[str, str, int]] = []  # directives since the last block
    index = 0
    while index < len(lines):
        line = lines[index]
        for match in _DIRECTIVE.finditer(line):
            pending.append((match["name"], match["args"], index + 1))
        opening = _FENCE.match(line)
        if not opening:
            if line.strip() and not _DIRECTIVE.search(line):
                pending = []  # directives belong to the block right after them
            index += 1
            continue
        fence, info = opening["fence"], opening["info"].strip()
        body, index = [], index + 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1
        language = info.split()[0].lower() if info else ""
        if language in LANGUAGES:
            blocks.append(_directed(Block(page, index - len(body) - 1, language,
                                          "\n".join(body) + "\n"), pending))
        elif pending:
            raise ValueError(f"{page}:{pending[0][2]}: docs-test directives before a "
                             f"```{language or '(no language)'} block, which is never run")
        pending = []
    return blocks


def _directed(block: Block, directives: list[tuple[str, str, int]]) -> Block:
    for name, args, line in directives:
        where = f"{block.page}:{line}"
        if name not in DIRECTIVES:
            raise ValueError(f"{where}: unknown docs-test directive '{name}' "
                             f"(known: {', '.join(DIRECTIVES)})")
        if name == "skip-run":
            if not args:
                raise ValueError(f"{where}: skip-run needs the reason it cannot run here")
            block.skip = args
        elif name == "expect-exit":
            if not args.isdigit():
                raise ValueError(f"{where}: expect-exit needs an exit code, found '{args}'")
            block.expect_exit = int(args)
        elif name == "expect-file":
            block.expect_files += args.split()
        else:
            block.expect_json += args.split()
    return block


def collect(root: Path = ROOT) -> list[Block]:
    """Every runnable block of every page."""
    return [block for page in pages(root)
            for block in parse(page.read_text(), str(page.relative_to(root)))]


def syntax_error(block: Block) -> str | None:
    """``bash -n`` or ``compile()``'s complaint about the block, or None."""
    if block.shell:
        done = subprocess.run(["bash", "-n"], input=block.script(), capture_output=True,
                              text=True)
        return done.stderr.strip() or None if done.returncode else None
    try:
        compile(block.text, block.id, "exec")
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})"
    return None


def commands(block: Block) -> list[list[str]]:
    """The shell commands of a block, as words: continuation lines joined, comments and
    the parts after ``|``, ``&&``, ``;`` taken as commands of their own."""
    script = block.script().replace("\\\n", " ")
    found = []
    for line in script.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue  # an unbalanced quote: bash -n reports it
        current: list[str] = []
        for word in [*words, ";"]:
            if word in (";", "|", "&&", "||", "&"):
                if current:
                    found.append(current)
                current = []
            else:
                current.append(word)
    return found


def tool_of(words: list[str]) -> tuple[str, list[str]] | None:
    """``(command, its arguments)`` for an ``ocr-*`` command (also as ``.venv/bin/ocr-*``) or
    a ``python benchmarks/NAME.py`` script; None for anything else."""
    words = [w for w in words if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", w)]  # VAR=value
    if not words:
        return None
    name = Path(words[0]).name
    if name.startswith("ocr-"):
        return name, words[1:]
    if re.fullmatch(r"python[0-9.]*", name) and len(words) > 1 \
            and re.fullmatch(r"benchmarks/[A-Za-z0-9_]+\.py", words[1]):
        return words[1], words[2:]
    return None


def flags_used(arguments: list[str]) -> list[str]:
    """The long options among ``arguments`` (``--name`` of ``--name=value`` too)."""
    return [a.split("=", 1)[0] for a in arguments if re.fullmatch(r"--[a-z0-9][a-z0-9-]*(=.*)?",
                                                                  a)]


_HELP: dict[str, str] = {}


def help_text(tool: str, root: Path = ROOT) -> str:
    """The ``--help`` of an ``ocr-*`` command or a benchmark script (cached)."""
    if tool not in _HELP:
        if tool.startswith("ocr-"):
            argv = [str(Path(sys.executable).with_name(tool)), "--help"]
        else:
            argv = [sys.executable, str(root / tool), "--help"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=root)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()[-300:]}")
        _HELP[tool] = done.stdout
    return _HELP[tool]


def unknown_flags(block: Block, helps=help_text) -> list[str]:
    """``'command --flag'`` for every flag the block gives a command whose --help lacks it."""
    unknown = []
    for words in commands(block):
        found = tool_of(words)
        if found is None:
            continue
        tool, arguments = found
        listed = set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", helps(tool)))
        unknown += [f"{tool} {flag}" for flag in flags_used(arguments) if flag not in listed]
    return unknown
