"""Where a source file can be split so that a completion starts a whole function, class or statement.

A boundary is the first line of a definition, moved up over the decorators, attributes and doc comments
attached to it. Per-language patterns match definition lines; a file where none matches (configuration,
scripts) falls back to blank lines between paragraphs, then to plain lines. Each split says which it used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_C_LIKE_DEF = (
    r"^[ \t]*((public|private|protected|internal|static|final|abstract|sealed|virtual|override|inline|extern|"
    r"export|async|suspend|open|data|partial|unsafe|const|constexpr)[ \t]+)*"
    r"(class|struct|interface|enum|record|namespace|fun|func|template|object|trait|impl|"
    r"[\w:<>,\[\]*& ]+[ \t*&]+[\w:~]+[ \t]*\([^;]*$)"
)

# Lines that start a definition.
DEFINITION: dict[str, str] = {
    "python": r"^[ \t]*((async[ \t]+)?def|class)[ \t]+\w",
    "rust": (
        r"^[ \t]*(pub(\([^)]*\))?[ \t]+)?((async|const|unsafe|default|extern([ \t]+\"[^\"]*\")?)[ \t]+)*"
        r"(fn|struct|enum|trait|impl|mod|union|type|macro_rules!)[ \t<{!]"
    ),
    "go": r"^(func|type|var|const)[ \t(]",
    "typescript": (
        r"^[ \t]*(export[ \t]+)?(default[ \t]+)?(declare[ \t]+)?(abstract[ \t]+)?(async[ \t]+)?"
        r"(function\b|class[ \t]|interface[ \t]|enum[ \t]|type[ \t]+\w+|namespace[ \t]|"
        r"(const|let)[ \t]+\w+[ \t]*(:[^=]*)?=[ \t]*(async[ \t]*)?(\(|function\b|\w+[ \t]*=>))"
    ),
    "dart": (
        r"^[ \t]*((abstract|sealed|base|final|interface)[ \t]+)*(class|mixin|enum|extension|typedef)[ \t]|"
        r"^[ \t]*((static|external|factory)[ \t]+)*[\w<>?,\[\] ]*[\w>?][ \t]+(get[ \t]+|set[ \t]+)?\w+[ \t]*"
        r"(<[^>]*>)?[ \t]*\([^;]*$"
    ),
    "sql": r"(?i)^(create|alter|drop|insert|update|delete|merge|with|select|grant|comment[ \t]+on)\b",
    "java": _C_LIKE_DEF,
    "kotlin": _C_LIKE_DEF,
    "csharp": _C_LIKE_DEF,
    "c": _C_LIKE_DEF,
    "cpp": _C_LIKE_DEF,
    "swift": (
        r"^[ \t]*((public|private|internal|open|static|final)[ \t]+)*(func|class|struct|enum|protocol|extension)\b"
    ),
    "shell": r"^[ \t]*(function[ \t]+\w+|\w+[ \t]*\(\)[ \t]*\{?)",
    "ruby": r"^[ \t]*(def|class|module)[ \t]",
    "php": r"^[ \t]*((public|private|protected|static|abstract|final)[ \t]+)*(function|class|interface|trait)[ \t]",
    "scala": r"^[ \t]*((private|protected|override|final|case|implicit)[ \t]+)*(def|class|object|trait)[ \t]",
    "lua": r"^[ \t]*(local[ \t]+)?function\b",
}
DEFINITION["tsx"] = DEFINITION["javascript"] = DEFINITION["typescript"]

# Lines that belong to the definition below them: decorators, attributes, doc comments.
ATTACHED: dict[str, str] = {
    "python": r"^[ \t]*@",
    "rust": r"^[ \t]*(#\[|///|//!)",
    "dart": r"^[ \t]*(@|///)",
    "java": r"^[ \t]*(@|/\*\*|\*|//)",
    "kotlin": r"^[ \t]*(@|/\*\*|\*|//)",
    "typescript": r"^[ \t]*(@|/\*\*|\*|//)",
    "go": r"^[ \t]*//",
    "sql": r"^[ \t]*--",
}
ATTACHED["tsx"] = ATTACHED["javascript"] = ATTACHED["typescript"]
_DEFAULT_ATTACHED = r"^[ \t]*(@|/\*\*|\*|//|#)"


@dataclass(frozen=True)
class Boundaries:
    """Character offsets where a unit (a definition, a paragraph or a line) starts, and of which kind."""

    offsets: tuple[int, ...]  # ascending, always starting with 0
    kind: str  # "definition", "blank_line" or "line"
    line_starts: tuple[int, ...] = (0,)  # where every line starts (samples cut targets at line starts too)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for match in re.finditer("\n", text):
        if match.end() < len(text):
            starts.append(match.end())
    return starts


def _statement_starts(lines: list[str], index: int) -> bool:
    """SQL: a statement starts where the previous code line ended one (`;`), not at a CTE's inner SELECT."""
    for previous in reversed(lines[:index]):
        code = previous.split("--", 1)[0].strip()
        if code:
            return code.endswith(";")
    return True


def find_boundaries(text: str, language: str) -> Boundaries:
    lines = text.split("\n")
    starts = _line_starts(text)
    definition = DEFINITION.get(language)
    found: list[int] = []
    if definition is not None:
        pattern = re.compile(definition)
        attached = re.compile(ATTACHED.get(language, _DEFAULT_ATTACHED))
        for index, line in enumerate(lines[: len(starts)]):
            if not pattern.match(line) or (language == "sql" and not _statement_starts(lines, index)):
                continue
            first = index
            while first > 0 and lines[first - 1].strip() and attached.match(lines[first - 1]):
                first -= 1
            if not found or first > found[-1]:
                found.append(first)
    kind = "definition"
    if not any(i > 0 for i in found):
        kind = "blank_line"
        found = [i for i in range(1, len(starts)) if not lines[i - 1].strip() and lines[i].strip()]
    if not found:
        kind = "line"
        found = list(range(1, len(starts)))
    offsets = sorted({0, *(starts[i] for i in found)})
    return Boundaries(tuple(offsets), kind, tuple(starts))
