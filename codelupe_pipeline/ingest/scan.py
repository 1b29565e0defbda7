"""Turn a directory or a git commit into code files, skipping (and counting by reason) everything else.

A scan has two phases. Listing (`list_directory`, `list_git_commit`) looks at names, sizes and fingerprints
(mtime+size for a directory, the blob id for git) and reads only licence files and, for files without a known
extension, a shebang line. `FileListing.read` then streams the files whose fingerprint changed since the
previous scan: unchanged files are never read again, and a big source never sits in memory at once.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import hashlib
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    SYMLINK = "symlink"  # inside the root: its target is ingested under its own path
    SYMLINK_OUTSIDE = "symlink_outside_root"
    SYMLINK_LOOP = "symlink_loop"
    SYMLINK_BROKEN = "symlink_broken"
    SPECIAL_FILE = "not_a_regular_file"  # FIFOs, sockets, devices, git submodules
    LOCKFILE = "lockfile"
    UNKNOWN_LANGUAGE = "unknown_language"
    LANGUAGE_NOT_KEPT = "language_not_kept"
    TOO_LARGE = "too_large"
    EMPTY = "empty"
    BINARY = "binary"
    UNDECODABLE = "undecodable"
    UNREADABLE = "unreadable"
    OVER_MAX_FILES = "over_max_files"
    DUPLICATE_PATH = "duplicate_path"  # dataset rows: a second row for a path already taken
    BAD_RECORD = "bad_record"  # dataset rows: not JSON, or no content/path column


@dataclass(frozen=True)
class ScanRules:
    languages: frozenset[str]
    max_file_bytes: int = 1_000_000
    max_files: int = 0  # 0 = no limit; else a deterministic sample of this many files
    exclude: tuple[str, ...] = ()  # glob patterns on the path within the source
    excluded_dirs: frozenset[str] = EXCLUDED_DIRS

    def in_excluded_dir(self, path: str) -> bool:
        return any(p in self.excluded_dirs or p.endswith(".egg-info") for p in path.split("/")[:-1])


@dataclass
class Skips:
    """Files left out, counted by reason, with a few example paths per reason for the UI."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, reason: SkipReason, path: str) -> None:
        self.add_many(reason, 1, [path])

    def add_many(self, reason: SkipReason, count: int, examples: Sequence[str]) -> None:
        if count:
            self.counts[reason.value] += count
            kept = self.examples[reason.value]
            kept.extend(examples[: 5 - len(kept)])


@dataclass(frozen=True)
class ScannedFile:
    path: str
    content: str
    sha256: str
    size_bytes: int
    line_count: int
    language: str
    fingerprint: str


def display_path(raw: str) -> str:
    """A path as valid UTF-8 for storage: undecodable bytes of odd file names become escapes."""
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _sample_key(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()


def decode_code(data: bytes, path: str, rules: ScanRules, skips: Skips) -> str | None:
    """The text of a would-be code file, or None (counted) when it is too large, empty, binary or not UTF-8."""
    if len(data) > rules.max_file_bytes:
        skips.add(SkipReason.TOO_LARGE, path)
        return None
    if b"\x00" in data[:8192]:
        skips.add(SkipReason.BINARY, path)
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        skips.add(SkipReason.UNDECODABLE, path)
        return None
    if not text.strip():
        skips.add(SkipReason.EMPTY, path)
        return None
    return text


def line_count(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def skip_by_name(path: str, rules: ScanRules, skips: Skips) -> bool:
    """Apply the rules that need only a path: exclude patterns, vendored dirs, lockfiles."""
    if rules.exclude and any(fnmatch.fnmatchcase(path, pattern) for pattern in rules.exclude):
        skips.add(SkipReason.EXCLUDED_PATTERN, path)
    elif rules.in_excluded_dir(path):
        skips.add(SkipReason.EXCLUDED_DIR, path)
    elif is_lockfile(path):
        skips.add(SkipReason.LOCKFILE, path)
    else:
        return False
    return True


@dataclass(frozen=True)
class _Candidate:
    path: str
    size: int
    fingerprint: str
    language: str
    read: Callable[[], bytes]


@dataclass
class FileListing:
    """The code files of one revision of a source, before any of them is read. Use it as a context manager:
    it may hold a reader process open for `read`."""

    revision: str
    license: str | None
    candidates: list[_Candidate]
    skips: Skips
    close: Callable[[], None] = lambda: None

    def __enter__(self) -> FileListing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unchanged(self, previous: Mapping[str, str]) -> list[str]:
        return [c.path for c in self.candidates if previous.get(c.path) == c.fingerprint]

    def read(self, previous: Mapping[str, str], rules: ScanRules) -> Iterator[ScannedFile]:
        """Read and yield the files whose fingerprint changed; skips are counted as they are found."""
        for cand in self.candidates:
            if previous.get(cand.path) == cand.fingerprint:
                continue
            if cand.size > rules.max_file_bytes:  # known before reading: never load a huge file
                self.skips.add(SkipReason.TOO_LARGE, cand.path)
                continue
            try:
                data = cand.read()
            except OSError:
                self.skips.add(SkipReason.UNREADABLE, cand.path)
                continue
            text = decode_code(data, cand.path, rules, self.skips)
            if text is None:
                continue
            yield ScannedFile(
                path=cand.path,
                content=text,
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
                line_count=line_count(text),
                language=cand.language,
                fingerprint=cand.fingerprint,
            )


def _select(
    entries: list[tuple[str, int, str, Callable[[], bytes]]],
    rules: ScanRules,
    skips: Skips,
    peek: Callable[[str, Callable[[], bytes]], bytes],
) -> list[_Candidate]:
    """Keep the entries whose name and language qualify, then sample down to `max_files`."""
    kept: list[_Candidate] = []
    for path, size, fingerprint, read in entries:
        if skip_by_name(path, rules, skips):
            continue
        if size == 0:
            skips.add(SkipReason.EMPTY, path)
            continue
        # The shebang is only needed for files without a known name or extension.
        language = detect_language(path)
        if language is None:
            try:
                language = detect_language(path, peek(path, read))
            except OSError:
                skips.add(SkipReason.UNREADABLE, path)
                continue
        if language is None:
            skips.add(SkipReason.UNKNOWN_LANGUAGE, path)
        elif language not in rules.languages:
            skips.add(SkipReason.LANGUAGE_NOT_KEPT, path)
        else:
            kept.append(_Candidate(path, size, fingerprint, language, read))
    if rules.max_files and len(kept) > rules.max_files:
        kept.sort(key=lambda c: _sample_key(c.path))
        for cand in kept[rules.max_files :]:
            skips.add(SkipReason.OVER_MAX_FILES, cand.path)
        kept = kept[: rules.max_files]
    return sorted(kept, key=lambda c: c.path)


def _read_file(path: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as fh:
            return fh.read()

    return read


def _peek_file(full: str) -> bytes:
    with open(full, "rb") as fh:
        return fh.read(200)


def _symlink_reason(full: str, root_real: str) -> SkipReason:
    try:
        os.stat(full)  # follows the link
    except OSError as exc:
        return SkipReason.SYMLINK_LOOP if exc.errno == errno.ELOOP else SkipReason.SYMLINK_BROKEN
    target = os.path.realpath(full)
    if os.path.commonpath([target, root_real]) != root_real:
        return SkipReason.SYMLINK_OUTSIDE
    parent = os.path.realpath(os.path.dirname(full))
    if os.path.isdir(target) and os.path.commonpath([parent, target]) == target:
        return SkipReason.SYMLINK_LOOP  # a directory link to one of its own ancestors: following it never ends
    return SkipReason.SYMLINK


def list_directory(root: Path, rules: ScanRules) -> FileListing:
    """List a directory tree without following symlinks; the revision is a hash of its file manifest."""
    if not root.is_dir():
        raise FileNotFoundError(f"source directory {root} does not exist or is not a directory")
    os.listdir(root)  # raises PermissionError for an unreadable root: the source fails as a whole
    root_real = os.path.realpath(root)
    skips = Skips()
    entries: list[tuple[str, int, str, Callable[[], bytes]]] = []
    license_text: str | None = None

    def on_error(err: OSError) -> None:
        skips.add(SkipReason.UNREADABLE, display_path(os.path.relpath(err.filename or str(root), root)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            rel = display_path(os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/"))
            if os.path.islink(full):
                skips.add(_symlink_reason(full, root_real), rel)
                dirnames.remove(name)
            elif name in rules.excluded_dirs or name.endswith(".egg-info"):
                skips.add(SkipReason.EXCLUDED_DIR, rel)
                dirnames.remove(name)
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = display_path(os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/"))
            try:
                st = os.lstat(full)
            except OSError:
                skips.add(SkipReason.UNREADABLE, rel)
                continue
            if stat.S_ISLNK(st.st_mode):
                skips.add(_symlink_reason(full, root_real), rel)
                continue
            if not stat.S_ISREG(st.st_mode):
                skips.add(SkipReason.SPECIAL_FILE, rel)  # never opened: a FIFO would block the read
                continue
            if is_license_file(rel) and license_text is None:
                try:
                    license_text = Path(full).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    pass
            entries.append((rel, st.st_size, f"{st.st_mtime_ns}:{st.st_size}", _read_file(full)))

    candidates = _select(entries, rules, skips, lambda path, read: _peek_file(os.path.join(root, path)))
    # Like a git tree id: changes whenever a kept file is added, removed, or touched (mtime or size).
    manifest = hashlib.sha256()
    for cand in candidates:
        manifest.update(f"{cand.path}\0{cand.fingerprint}\0".encode("utf-8", "surrogateescape"))
    return FileListing(
        revision="tree-" + manifest.hexdigest()[:16],
        license=detect_spdx(license_text) if license_text else None,
        candidates=candidates,
        skips=skips,
    )


def _git_symlink_reason(path: str, target: bytes) -> SkipReason:
    resolved = os.path.normpath(os.path.join(os.path.dirname(path), target.decode("utf-8", "surrogateescape")))
    if target.startswith(b"/") or resolved == ".." or resolved.startswith("../"):
        return SkipReason.SYMLINK_OUTSIDE
    return SkipReason.SYMLINK


def list_git_commit(repo_dir: Path, commit: str, rules: ScanRules) -> FileListing:
    """List the files of one commit straight from git's object store (no checkout needed)."""
    skips = Skips()
    entries: list[tuple[str, int, str, Callable[[], bytes]]] = []
    license: str | None = None
    reader = git.BlobReader(repo_dir)  # serves `FileListing.read`; closed with the listing
    try:
        with git.BlobReader(repo_dir) as blobs:
            for entry in git.list_tree(repo_dir, commit):
                path = display_path(entry.path)
                if entry.mode == "120000":
                    skips.add(_git_symlink_reason(path, blobs.read(entry.oid)), path)
                    continue
                if entry.type != "blob":
                    skips.add(SkipReason.SPECIAL_FILE, path)  # submodules
                    continue
                if is_license_file(path) and license is None:
                    license = detect_spdx(blobs.read(entry.oid).decode("utf-8", "replace"))
                entries.append((path, entry.size, entry.oid, functools.partial(reader.read, entry.oid)))
            candidates = _select(entries, rules, skips, lambda path, read: read()[:200])
    except BaseException:
        reader.close()
        raise
    return FileListing(revision=commit, license=license, candidates=candidates, skips=skips, close=reader.close)
