"""Language detection from a file's name, extension and shebang line."""

from __future__ import annotations

import os
import re

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".rs": "rust",
    ".go": "go",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".dart": "dart",
    ".sql": "sql",
    ".java": "java",
    ".kt": "kotlin", ".kts": "kotlin",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".cs": "csharp",
    ".swift": "swift",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell",
    ".rb": "ruby",
    ".php": "php",
    ".scala": "scala",
    ".lua": "lua",
    ".r": "r",
    ".md": "markdown",
    ".json": "json",
    ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml",
    ".html": "html", ".htm": "html",
    ".css": "css",
    ".xml": "xml",
    ".proto": "protobuf",
}  # fmt: skip

SPECIAL_NAMES: dict[str, str] = {
    "dockerfile": "dockerfile",
    "containerfile": "dockerfile",
    "makefile": "makefile",
    "gnumakefile": "makefile",
    "cmakelists.txt": "cmake",
    "rakefile": "ruby",
    "gemfile": "ruby",
    "jenkinsfile": "groovy",
    "vagrantfile": "ruby",
    "pkgbuild": "shell",
    ".bashrc": "shell",
    ".bash_profile": "shell",
    ".profile": "shell",
    ".zshrc": "shell",
}

_SHEBANG_INTERPRETERS: dict[str, str] = {
    "python": "python",
    "python3": "python",
    "python2": "python",
    "sh": "shell",
    "bash": "shell",
    "zsh": "shell",
    "dash": "shell",
    "ksh": "shell",
    "node": "javascript",
    "deno": "typescript",
    "ts-node": "typescript",
    "ruby": "ruby",
    "perl": "perl",
    "php": "php",
    "dart": "dart",
    "lua": "lua",
    "swift": "swift",
}
_SHEBANG = re.compile(rb"^#![ \t]*(\S+)((?:[ \t]+\S+)*)")

# Files that hold resolved dependency versions: data, not code, whatever their extension says.
LOCKFILES = frozenset(
    {
        "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "cargo.lock", "go.sum", "poetry.lock",
        "pipfile.lock", "uv.lock", "composer.lock", "gemfile.lock", "pubspec.lock", "bun.lockb",
        "flake.lock", "packages.lock.json", "podfile.lock", "mix.lock",
    }
)  # fmt: skip


# Language names as datasets spell them (The Stack's `lang`, GitHub linguist names) -> our ids.
_NAMED_LANGUAGES: dict[str, str] = {
    "c++": "cpp", "c#": "csharp", "objective-c": "objc", "shell": "shell", "bash": "shell", "sh": "shell",
    "tsx": "tsx", "jsx": "javascript", "plpgsql": "sql", "plsql": "sql", "tsql": "sql", "mysql": "sql",
    "batchfile": "batch", "powershell": "powershell", "jupyter notebook": "jupyter",
}  # fmt: skip
_KNOWN_IDS = frozenset(EXTENSIONS.values()) | frozenset(SPECIAL_NAMES.values())


def language_from_name(name: str | None) -> str | None:
    """Our id for a language name as datasets write it ("Python", "C++", "TypeScript"); None if unknown."""
    if not name:
        return None
    key = name.strip().lower()
    if key in _NAMED_LANGUAGES:
        return _NAMED_LANGUAGES[key]
    return key if key in _KNOWN_IDS else None


def _file_name(path: str) -> str:
    # Plain string work: this runs for every file of every source (PurePosixPath costs ~10x more).
    return path.rsplit("/", 1)[-1].lower()


def is_lockfile(path: str) -> bool:
    return _file_name(path) in LOCKFILES


def detect_language(path: str, head: bytes = b"") -> str | None:
    """The language of a file, from its special name, its extension, then its shebang line; None if unknown."""
    name = _file_name(path)
    if name in SPECIAL_NAMES:
        return SPECIAL_NAMES[name]
    if name.startswith("dockerfile."):
        return "dockerfile"
    suffix = os.path.splitext(name)[1]  # ".bashrc" has none, like PurePosixPath(".bashrc").suffix
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    return _shebang_language(head[:200])


def _shebang_language(head: bytes) -> str | None:
    """`#!/usr/bin/python3`, `#!/usr/bin/env python3.12` or `#!/usr/bin/env -S deno run`: the interpreter's language."""
    match = _SHEBANG.match(head)
    if not match:
        return None
    interpreter = match.group(1).rsplit(b"/", 1)[-1]
    if interpreter == b"env":
        # env's own options (-S, -i) and VAR=value assignments come before the interpreter.
        args = [a for a in match.group(2).split() if not a.startswith(b"-") and b"=" not in a]
        if not args:
            return None
        interpreter = args[0].rsplit(b"/", 1)[-1]
    name = interpreter.decode("ascii", "replace")
    return _SHEBANG_INTERPRETERS.get(name) or _SHEBANG_INTERPRETERS.get(re.sub(r"[\d.]+$", "", name))
