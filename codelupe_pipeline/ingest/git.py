"""Git plumbing for ingestion: shallow fetch of one ref or commit, tree listing and blob reading.

Repositories are kept bare under the data directory: files are read from git's object store at a pinned
commit, so no checkout is needed and odd file names (spaces, newlines, non-UTF-8 bytes) are handled by `-z`.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

CLONE_TIMEOUT_SECONDS = 300  # the original crawler's limit per repository
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@github.com:owner/repo.git


class GitError(RuntimeError):
    """A git command failed; the message carries git's own error text."""


class EmptyRepositoryError(GitError):
    """The remote repository has no commits yet: nothing to ingest, nothing wrong."""


def _env() -> dict[str, str]:
    # Never wait for a password prompt, never read the user's global config for hooks or rewrites.
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GIT_CONFIG_NOSYSTEM": "1"}


def run_git(args: list[str], cwd: Path | None = None, timeout: float = CLONE_TIMEOUT_SECONDS) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=_env(), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args[:2])} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        # git's first lines say what went wrong ("fatal: ... does not appear to be a git repository").
        message = [line.strip() for line in proc.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        raise GitError(f"git {args[0]} failed: {' | '.join(message[:3]) or f'exit status {proc.returncode}'}")
    return proc.stdout.decode("utf-8", "surrogateescape")


def normalize_url(url: str) -> str:
    """Local paths become file:// URLs so that shallow fetches work on them too."""
    if "://" in url or _SCP_LIKE.match(url):
        return url
    return Path(url).expanduser().resolve().as_uri()


def sync(url: str, dest: Path, ref: str | None = None, commit: str | None = None) -> str:
    """Fetch `commit`, or the tip of `ref` (the remote HEAD when None), into a bare repo; return the commit."""
    if not (dest / "HEAD").exists():
        dest.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--bare", "--quiet", str(dest)])
    remote_url = normalize_url(url)
    run_git(["config", "remote.origin.url", remote_url], cwd=dest)
    want = commit or ref or "HEAD"
    try:
        run_git(["fetch", "--depth", "1", "--no-tags", "--quiet", "origin", want], cwd=dest)
    except GitError as exc:
        # A repository without commits has no HEAD to fetch: say so instead of a fetch error.
        if want == "HEAD" and _has_no_refs(dest):
            raise EmptyRepositoryError(f"{url} has no commits yet") from None
        raise GitError(f"{url} ({want}): {exc}") from None
    resolved = run_git(["rev-parse", "--verify", "FETCH_HEAD^{commit}"], cwd=dest).strip()
    if commit and not resolved.startswith(commit.lower()):
        raise GitError(f"fetched {resolved} but the source pins commit {commit}")
    return resolved


def _has_no_refs(repo: Path) -> bool:
    try:
        return not run_git(["ls-remote", "origin"], cwd=repo).strip()
    except GitError:
        return False  # unreachable: the fetch error says more


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    type: str
    oid: str
    size: int
    path: str


def list_tree(repo: Path, commit: str) -> Iterator[TreeEntry]:
    """Every entry of a commit's tree, recursively."""
    out = run_git(["ls-tree", "-r", "-z", "-l", "--full-tree", commit], cwd=repo)
    for record in out.split("\0"):
        if not record:
            continue
        meta, path = record.split("\t", 1)
        mode, kind, oid, size = meta.split()
        yield TreeEntry(mode, kind, oid, int(size) if size != "-" else 0, path)


class BlobReader:
    """Reads blobs through one long-lived `git cat-file --batch` process."""

    def __init__(self, repo: Path) -> None:
        self._repo = repo
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=30)
            self._proc = None

    def read(self, oid: str) -> bytes:
        if self._proc is None:
            self._proc = subprocess.Popen(
                ["git", "cat-file", "--batch"],
                cwd=self._repo,
                env=_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        stdin: IO[bytes] | None = self._proc.stdin
        stdout: IO[bytes] | None = self._proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(oid.encode() + b"\n")
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3:
            raise OSError(f"git cat-file: cannot read object {oid}")
        data = stdout.read(int(header[2]))
        stdout.read(1)  # the newline after the content
        return data
