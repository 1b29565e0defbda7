"""Language detection from a file's name, extension and shebang line."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

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
}
_SHEBANG = re.compile(rb"^#!\s*(\S+)(?:\s+(\S+))?")

# Files that hold resolved dependency versions: data, not code, whatever their extension says.
LOCKFILES = frozenset(
    {
        "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "cargo.lock", "go.sum", "poetry.lock",
        "pipfile.lock", "uv.lock", "composer.lock", "gemfile.lock", "pubspec.lock", "bun.lockb",
        "flake.lock", "packages.lock.json", "podfile.lock", "mix.lock",
    }
)  # fmt: skip


def is_lockfile(path: str) -> bool:
    return PurePosixPath(path).name.lower() in LOCKFILES


def detect_language(path: str, head: bytes = b"") -> str | None:
    """The language of a file, from its special name, its extension, then its shebang line; None if unknown."""
    name = PurePosixPath(path).name.lower()
    if name in SPECIAL_NAMES:
        return SPECIAL_NAMES[name]
    if name.startswith("dockerfile."):
        return "dockerfile"
    suffix = PurePosixPath(name).suffix
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    match = _SHEBANG.match(head[:200])
    if match:
        interpreter = match.group(1).rsplit(b"/", 1)[-1]
        if interpreter == b"env" and match.group(2):
            interpreter = match.group(2)
        key = re.sub(rb"[\d.]+$", b"", interpreter).decode("ascii", "replace") or interpreter.decode()
        return _SHEBANG_INTERPRETERS.get(interpreter.decode("ascii", "replace"), _SHEBANG_INTERPRETERS.get(key))
    return None
