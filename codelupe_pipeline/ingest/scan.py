"""Turn a directory or a git commit into code files, skipping (and counting by reason) everything else.

A scan is incremental: it receives the fingerprints of the files stored last time (mtime+size for a
directory, the blob id for git) and only reads the files whose fingerprint changed.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from codelupe_pipeline.ingest import git
from codelupe_pipeline.ingest.languages import detect_language, is_lockfile
from codelupe_pipeline.ingest.licenses import detect_spdx, is_license_file

# Directories that hold vendored, generated or build output rather than a project's own code.
EXCLUDED_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", "vendor", "third_party", "target", "build", "dist", "out",
     "__pycache__", ".venv", "venv", ".tox", ".mypy_cache", ".pytest_cache", ".idea", ".vscode",
     ".dart_tool", ".gradle", "bower_components", "site-packages", ".next", ".cache"}
)  # fmt: skip


class SkipReason(StrEnum):
    EXCLUDED_DIR = "vendored_or_build_dir"
    EXCLUDED_PATTERN = "excluded_by_pattern"
    SYMLINK = "symlink"
    SPECIAL_FILE = "not_a_regular_file"
    LOCKFILE = "lockfile"
    UNKNOWN_LANGUAGE = "unknown_language"
    LANGUAGE_NOT_KEPT = "language_not_kept"
    TOO_LARGE = "too_large"
    EMPTY = "empty"
    BINARY = "binary"
    UNDECODABLE = "undecodable"
    UNREADABLE = "unreadable"
    OVER_MAX_FILES = "over_max_files"


@dataclass(frozen=True)
class ScanRules:
    languages: frozenset[str]
    max_file_bytes: int = 1_000_000
    max_files: int = 0  # 0 = no limit; else a deterministic sample of this many files
    exclude: tuple[str, ...] = ()  # glob patterns on the path within the source
    excluded_dirs: frozenset[str] = EXCLUDED_DIRS


@dataclass(frozen=True)
class ScannedFile:
    path: str
    content: str
    sha256: str
    size_bytes: int
    line_count: int
    language: str
    fingerprint: str


@dataclass
class ScanResult:
    revision: str
    files: list[ScannedFile] = field(default_factory=list)  # new or changed since the previous scan
    present: dict[str, str] = field(default_factory=dict)  # every file kept now: path -> fingerprint
    license: str | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def unchanged(self) -> int:
        return len(self.present) - len(self.files)

    def skip(self, reason: SkipReason, path: str) -> None:
        self.skipped[reason.value] += 1
        if len(self.skipped_examples[reason.value]) < 5:
            self.skipped_examples[reason.value].append(path)


@dataclass(frozen=True)
class _Candidate:
    path: str
    size: int
    fingerprint: str
    read: Callable[[], bytes]


def display_path(raw: str) -> str:
    """A path as valid UTF-8 for storage: undecodable bytes of odd file names become escapes."""
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _sample_key(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()


def _classify(candidate: _Candidate, rules: ScanRules, result: ScanResult) -> ScannedFile | None:
    if candidate.size > rules.max_file_bytes:
        result.skip(SkipReason.TOO_LARGE, candidate.path)
        return None
    if candidate.size == 0:
        result.skip(SkipReason.EMPTY, candidate.path)
        return None
    try:
        data = candidate.read()
    except OSError:
        result.skip(SkipReason.UNREADABLE, candidate.path)
        return None
    if b"\x00" in data[:8192]:
        result.skip(SkipReason.BINARY, candidate.path)
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        result.skip(SkipReason.UNDECODABLE, candidate.path)
        return None
    if not text.strip():
        result.skip(SkipReason.EMPTY, candidate.path)
        return None
    language = detect_language(candidate.path, data[:200])
    assert language is not None  # candidates are pre-filtered on language
    return ScannedFile(
        path=candidate.path,
        content=text,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        line_count=text.count("\n") + (0 if text.endswith("\n") else 1),
        language=language,
        fingerprint=candidate.fingerprint,
    )


def _process(
    candidates: Iterable[_Candidate],
    previous: Mapping[str, str],
    rules: ScanRules,
    result: ScanResult,
    peek: Callable[[_Candidate], bytes],
) -> None:
    kept: list[_Candidate] = []
    for cand in candidates:
        if any(fnmatch.fnmatchcase(cand.path, pattern) for pattern in rules.exclude):
            result.skip(SkipReason.EXCLUDED_PATTERN, cand.path)
            continue
        if is_lockfile(cand.path):
            result.skip(SkipReason.LOCKFILE, cand.path)
            continue
        # The shebang is only needed for files without a known name or extension.
        language = detect_language(cand.path)
        if language is None:
            try:
                language = detect_language(cand.path, peek(cand))
            except OSError:
                result.skip(SkipReason.UNREADABLE, cand.path)
                continue
        if language is None:
            result.skip(SkipReason.UNKNOWN_LANGUAGE, cand.path)
        elif language not in rules.languages:
            result.skip(SkipReason.LANGUAGE_NOT_KEPT, cand.path)
        else:
            kept.append(cand)
    if rules.max_files and len(kept) > rules.max_files:
        kept.sort(key=lambda c: _sample_key(c.path))
        for cand in kept[rules.max_files :]:
            result.skip(SkipReason.OVER_MAX_FILES, cand.path)
        kept = kept[: rules.max_files]
    for cand in sorted(kept, key=lambda c: c.path):
        if previous.get(cand.path) == cand.fingerprint:
            result.present[cand.path] = cand.fingerprint
            continue
        scanned = _classify(cand, rules, result)
        if scanned is not None:
            result.files.append(scanned)
            result.present[cand.path] = cand.fingerprint


def _read_file(path: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as fh:
            return fh.read()

    return read


def scan_directory(root: Path, previous: Mapping[str, str], rules: ScanRules) -> ScanResult:
    """Scan a directory tree without following symlinks; the revision is a hash of its file manifest."""
    if not root.is_dir():
        raise FileNotFoundError(f"source directory {root} does not exist or is not a directory")
    os.listdir(root)  # raises PermissionError for an unreadable root: the source fails as a whole
    result = ScanResult(revision="")
    candidates: list[_Candidate] = []
    license_text: str | None = None

    def on_error(err: OSError) -> None:
        result.skip(SkipReason.UNREADABLE, display_path(os.path.relpath(err.filename or str(root), root)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            rel = display_path(os.path.normpath(os.path.join(rel_dir, name)))
            if os.path.islink(full):
                result.skip(SkipReason.SYMLINK, rel)
                dirnames.remove(name)
            elif name in rules.excluded_dirs or name.endswith(".egg-info"):
                result.skip(SkipReason.EXCLUDED_DIR, rel)
                dirnames.remove(name)
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = display_path(os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/"))
            try:
                st = os.lstat(full)
            except OSError:
                result.skip(SkipReason.UNREADABLE, rel)
                continue
            if stat.S_ISLNK(st.st_mode):
                result.skip(SkipReason.SYMLINK, rel)
                continue
            if not stat.S_ISREG(st.st_mode):
                result.skip(SkipReason.SPECIAL_FILE, rel)
                continue
            if is_license_file(rel) and license_text is None:
                try:
                    license_text = Path(full).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    pass
            candidates.append(_Candidate(rel, st.st_size, f"{st.st_mtime_ns}:{st.st_size}", _read_file(full)))

    def peek(cand: _Candidate) -> bytes:
        with open(os.path.join(root, cand.path), "rb") as fh:
            return fh.read(200)

    _process(candidates, previous, rules, result, peek)
    result.license = detect_spdx(license_text) if license_text else None
    # Like a git tree id: changes whenever a kept file is added, removed, or touched (mtime or size).
    manifest = hashlib.sha256()
    for path, fingerprint in sorted(result.present.items()):
        manifest.update(f"{path}\0{fingerprint}\0".encode())
    result.revision = "tree-" + manifest.hexdigest()[:16]
    return result


def scan_git_commit(repo_dir: Path, commit: str, previous: Mapping[str, str], rules: ScanRules) -> ScanResult:
    """Scan the files of one commit straight from git's object store (no checkout needed)."""
    result = ScanResult(revision=commit)
    candidates: list[_Candidate] = []
    with git.BlobReader(repo_dir) as blobs:
        for entry in git.list_tree(repo_dir, commit):
            path = display_path(entry.path)
            parts = path.split("/")
            if any(p in rules.excluded_dirs or p.endswith(".egg-info") for p in parts[:-1]):
                result.skip(SkipReason.EXCLUDED_DIR, path)
                continue
            if entry.mode == "120000":
                result.skip(SkipReason.SYMLINK, path)
                continue
            if entry.type != "blob":
                result.skip(SkipReason.SPECIAL_FILE, path)  # submodules
                continue
            if is_license_file(path) and result.license is None:
                result.license = detect_spdx(blobs.read(entry.oid).decode("utf-8", "replace"))
            candidates.append(_Candidate(path, entry.size, entry.oid, functools.partial(blobs.read, entry.oid)))
        _process(candidates, previous, rules, result, lambda cand: cand.read()[:200])
    return result
