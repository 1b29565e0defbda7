"""The held-out benchmark from the user's own code ("your stack").

Functions of the snapshot's validation split (whole repositories the model never trained on) become
completion tasks: the file up to the start of a function body is the prompt, the body is the target. A
completion is cut where the function ends (indentation for Python, the matching brace elsewhere) and
scored by exact match and edit similarity (1 - Levenshtein distance / length of the longer, per character,
as RepoBench and CrossCodeEval report it). Validation perplexity is measured on the same files, in the
format training reads them, so users see what fine-tuning did to their own code.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from codelupe_pipeline.train.samples import file_header


class SourceFile(Protocol):
    """A file of the snapshot (train/samples.py's SnapshotFile), without importing training's dependencies."""

    @property
    def repo(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def content(self) -> str: ...


# Function headers of the brace languages; the body is the block after the first line ending in `{`.
HEADERS = {
    "rust": re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"[^\"]*\"\s+)?fn\s+\w+"),
    "go": re.compile(r"^func\s"),
    "typescript": re.compile(
        r"^\s*(export\s+)?(default\s+)?(async\s+)?function\s*\*?\s*\w+"
        r"|^\s+(public\s+|private\s+|protected\s+|static\s+|async\s+|readonly\s+)*(?!(if|for|while|switch|catch|return)\b)"
        r"\w+\s*\(.*\)\s*(:\s*[^={;]+)?\{\s*$"
    ),
    "dart": re.compile(
        r"^\s*(static\s+|final\s+|const\s+|external\s+)*(?!(if|for|while|switch|catch|return|else)\b)"
        r"[\w<>\[\]?, ]+\s+\w+\s*\([^;]*\)\s*(async\s*)?\{\s*$"
    ),
}
HEADERS["javascript"] = HEADERS["typescript"]
SUPPORTED = ("python", *HEADERS)


@dataclass(frozen=True)
class HeldoutParams:
    max_tasks: int = 200  # 0 = no held-out benchmark
    max_per_file: int = 3
    min_body_lines: int = 2
    max_body_lines: int = 15
    max_body_chars: int = 800
    context_chars: int = 6000  # file text kept before the body (the end of it)
    max_new_tokens: int = 256
    perplexity_max_chars: int = 400_000  # validation text scored for perplexity
    perplexity_window: int = 1024  # tokens per window


@dataclass(frozen=True)
class CompletionTask:
    task_id: str  # repo/path:line
    repo: str
    path: str
    language: str
    prefix: str  # the file before the body
    target: str  # the body, as the file has it
    indent: int  # the function's own indentation (Python: where the body ends)

    def prompt(self, file_separator: str) -> str:
        """The framing training uses for a file: `<file separator>path\\n` + content, unframed without one."""
        return _framed(file_separator, self.path, self.prefix)

    def cut(self, completion: str) -> str:
        return cut_body(self.language, completion, self.indent)


@dataclass(frozen=True)
class HeldoutSet:
    tasks: list[CompletionTask]
    files: list[SourceFile]  # the validation files scored for perplexity (within the character budget)
    params: HeldoutParams

    @property
    def version(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self.params), sort_keys=True).encode())
        for task in self.tasks:
            digest.update(f"{task.task_id}\0{task.prefix}\0{task.target}\0".encode())
        for f in self.files:
            digest.update(f"{f.path}\0{f.content}\0".encode())
        return digest.hexdigest()[:16]

    def perplexity_texts(self, file_separator: str) -> list[str]:
        return [_framed(file_separator, f.path, f.content) for f in self.files]


def _framed(file_separator: str, path: str, text: str) -> str:
    return file_header(file_separator, path) + text


def _python_functions(content: str) -> list[tuple[int, int]]:
    """(first body line index, def indentation) of each function whose body starts on a line of its own
    (after the docstring, which stays in the prompt as HumanEval's do)."""
    try:
        tree = ast.parse(content)
    except (SyntaxError, ValueError):
        return []
    lines = content.split("\n")
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring is part of the prompt
        if not body:
            continue
        first = body[0]
        own_line = not lines[first.lineno - 1][: first.col_offset].strip()
        if own_line and first.col_offset > node.col_offset:
            found.append((first.lineno - 1, node.col_offset))
    return found


def _brace_functions(language: str, lines: list[str]) -> list[tuple[int, int]]:
    """(first body line index, 0) after each function header's opening brace."""
    header = HEADERS[language]
    found = []
    for i, line in enumerate(lines):
        if not header.match(line):
            continue
        for j in range(i, min(i + 8, len(lines))):  # signatures may span lines
            if lines[j].rstrip().endswith("{"):
                found.append((j + 1, 0))
                break
            if lines[j].rstrip().endswith((";", "}")):
                break
    return found


def _strip_blank_ends(text: str) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


def _brace_end(text: str, language: str) -> int | None:
    """Offset of the `}` that closes a block whose `{` came just before `text`; strings and comments skipped."""
    depth, i, n = 1, 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                return None
        elif text.startswith("/*", i):
            i = text.find("*/", i + 2)
            if i < 0:
                return None
            i += 1
        elif c in '"`' or (c == "'" and re.match(r"'(\\.|[^\\'\n])'", text[i : i + 4]) and language == "rust"):
            close = "'" if c == "'" else c
            j = i + 1
            while j < n and text[j] != close:
                j += 2 if text[j] == "\\" else 1
            i = j
        elif c == "'" and language != "rust":
            j = i + 1
            while j < n and text[j] not in "'\n":
                j += 2 if text[j] == "\\" else 1
            i = j
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def cut_body(language: str, text: str, indent: int) -> str:
    """The part of `text` (what follows a function's header) that is the function's body."""
    if language == "python":
        kept = []
        for line in text.split("\n"):
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            kept.append(line)
        return _strip_blank_ends("\n".join(kept))
    end = _brace_end(text, language)
    if end is None:
        return _strip_blank_ends(text)
    line_start = text.rfind("\n", 0, end) + 1
    body = text[:line_start] if not text[line_start:end].strip() else text[:end]
    return _strip_blank_ends(body)


def extract_tasks(files: Sequence[SourceFile], params: HeldoutParams) -> list[CompletionTask]:
    """Function-completion tasks from `files`, a deterministic spread of at most `max_tasks`."""
    candidates: list[tuple[str, CompletionTask]] = []
    for f in files:
        if f.language not in SUPPORTED:
            continue
        lines = f.content.split("\n")
        starts = _python_functions(f.content) if f.language == "python" else _brace_functions(f.language, lines)
        per_file: list[tuple[str, CompletionTask]] = []
        for start, indent in starts:
            rest = "\n".join(lines[start:])
            target = cut_body(f.language, rest, indent)
            body_lines = [line for line in target.split("\n") if line.strip()]
            if not params.min_body_lines <= len(body_lines) <= params.max_body_lines:
                continue
            if len(target) > params.max_body_chars:
                continue
            prefix = "\n".join(lines[:start]) + "\n"
            if len(prefix) > params.context_chars:
                cut = prefix.find("\n", len(prefix) - params.context_chars)
                prefix = prefix[cut + 1 :]
            task_id = f"{f.repo}/{f.path}:{start + 1}"
            task = CompletionTask(task_id, f.repo, f.path, f.language, prefix, target, indent)
            per_file.append((hashlib.sha256(task_id.encode()).hexdigest(), task))
        candidates += sorted(per_file)[: params.max_per_file]
    return [task for _, task in sorted(candidates)[: params.max_tasks]]


def build_heldout(files: Sequence[SourceFile], params: HeldoutParams) -> HeldoutSet:
    tasks = extract_tasks(files, params) if params.max_tasks > 0 else []
    budget = params.perplexity_max_chars
    kept = []
    for f in sorted(files, key=lambda f: (f.repo, f.path)):
        if budget <= 0:
            break
        kept.append(f)
        budget -= len(f.content)
    return HeldoutSet(tasks, kept, params)


def levenshtein(a: str, b: str) -> int:
    """Edit distance, bit-parallel (Myers 1999, Hyyrö 2001): one pass over `b`, `a` held in the bits of an int."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    m = len(a)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    peq: dict[str, int] = {}
    for i, ch in enumerate(a):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    pv, mv, score = full, 0, m
    for ch in b:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
    return score


def edit_similarity(prediction: str, target: str) -> float:
    longest = max(len(prediction), len(target))
    return 1.0 if longest == 0 else 1.0 - levenshtein(prediction, target) / longest


def score_completion(task: CompletionTask, completion: str) -> tuple[str, float, float]:
    """(the body cut from the completion, exact match 0/1, edit similarity)."""
    body = task.cut(completion)
    target = _strip_blank_ends(task.target)
    return body, float(body == target), edit_similarity(body, target)
