"""GitHub discovery: run the searches of the sources file, pass each repository through the repo gate, and keep
the accepted ones in a managed YAML file that the source catalog reads as git sources.

Discovered repositories are sticky: one that a search no longer returns (rankings move, `pushed_after` windows
slide) stays, so its code does not drop out of the training data by chance. A repository leaves the file only
when the gate (as configured now) rejects it, when it is excluded, or when every search that found it is gone.
A search that fails keeps what it found before.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from codelupe_pipeline.ingest.github_api import GitHubApiError, GitHubClient
from codelupe_pipeline.ingest.sources import DiscoveredRepo, GitHubDiscovery, RepoGate

HEADER = """\
# Managed by CodeLupe's GitHub discovery (the `github_repositories` asset): rewritten on every discovery run.
# Each repository here is ingested as a git source named github.<owner>.<repo>. To change one, declare a
# source with that name in the sources file (it overrides this entry); to drop one, add owner/repo to
# `github.exclude_repos` there.
"""


def gate_reason(repo: DiscoveredRepo, gate: RepoGate) -> str | None:
    """Why the gate rejects a repository (a short reason), or None when it passes."""
    if gate.skip_forks and repo.fork:
        return "fork"
    if gate.skip_archived and repo.archived:
        return "archived"
    if gate.skip_templates and repo.is_template:
        return "template_repository"
    if repo.stars < gate.min_stars:
        return f"stars<{gate.min_stars}"
    if repo.forks < gate.min_forks:
        return f"forks<{gate.min_forks}"
    if gate.languages and (repo.language or "").lower() not in {lang.lower() for lang in gate.languages}:
        return "language"
    if gate.max_size_mb and repo.size_kb > gate.max_size_mb * 1024:
        return f"size>{gate.max_size_mb}MB"
    text = f"{repo.full_name.replace('/', ' ')} {repo.description or ''}".lower()
    for word in gate.exclude_words:
        # Whole words, also plural and inside names: "rust-examples", "demo_app", "Tutorials".
        if re.search(rf"(?<![a-z0-9]){re.escape(word.lower())}s?(?![a-z0-9])", text):
            return f"word:{word.lower()}"
    return None


def repo_from_item(item: Mapping[str, Any], search: str, today: str) -> DiscoveredRepo:
    """A repository search result item as a discovered repository."""
    license = item.get("license") or {}
    spdx = license.get("spdx_id") if isinstance(license, dict) else None
    return DiscoveredRepo(
        full_name=str(item["full_name"]),
        clone_url=str(item["clone_url"]),
        default_branch=item.get("default_branch"),
        stars=int(item.get("stargazers_count") or 0),
        forks=int(item.get("forks_count") or 0),
        language=item.get("language"),
        description=item.get("description"),
        topics=tuple(item.get("topics") or ()),
        license=spdx if spdx and spdx != "NOASSERTION" else None,
        size_kb=int(item.get("size") or 0),
        fork=bool(item.get("fork")),
        archived=bool(item.get("archived")),
        is_template=bool(item.get("is_template")),
        pushed_at=item.get("pushed_at"),
        found_by=(search,),
        first_seen=today,
        last_seen=today,
    )


@dataclass
class SearchReport:
    search: str
    query: str
    results: int = 0  # total_count GitHub reported
    seen: int = 0
    accepted: int = 0
    new: int = 0
    incomplete: bool = False
    error: str | None = None


@dataclass
class DiscoveryResult:
    repos: list[DiscoveredRepo]
    searches: list[SearchReport]
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (full_name, why) left the file this run

    def reject(self, reason: str, full_name: str) -> None:
        self.rejected[reason] += 1
        if len(self.rejected_examples[reason]) < 5:
            self.rejected_examples[reason].append(full_name)

    @property
    def failed(self) -> list[SearchReport]:
        return [s for s in self.searches if s.error]


def _merge(old: DiscoveredRepo | None, new: DiscoveredRepo) -> DiscoveredRepo:
    if old is None:
        return new
    return new.model_copy(
        update={"found_by": tuple(sorted(set(old.found_by) | set(new.found_by))), "first_seen": old.first_seen}
    )


def discover(
    client: GitHubClient, config: GitHubDiscovery, previous: Iterable[DiscoveredRepo], today: str
) -> DiscoveryResult:
    """Run every search and return the discovered repositories to keep (previous ones merged in)."""
    before = {r.full_name.lower(): r for r in previous}
    accepted: dict[str, DiscoveredRepo] = {}
    refused: dict[str, str] = {}  # seen in this run and rejected, with the reason
    result = DiscoveryResult(repos=[], searches=[])
    for search in config.searches:
        report = SearchReport(search.name, search.q())
        result.searches.append(report)
        try:
            for page in client.search_repositories(report.query, search.sort, search.max_repos):
                report.results, report.incomplete = page.total_count, report.incomplete or page.incomplete
                for item in page.items:
                    report.seen += 1
                    repo = repo_from_item(item, search.name, today)
                    key = repo.full_name.lower()
                    reason = "excluded" if key in config.exclude_repos else gate_reason(repo, config.gate)
                    if reason:
                        result.reject(reason, repo.full_name)
                        refused[key] = reason
                        continue
                    report.accepted += 1
                    report.new += key not in before and key not in accepted
                    accepted[key] = _merge(accepted.get(key) or before.get(key), repo)
        except (GitHubApiError, KeyError, TypeError, ValueError) as exc:
            report.error = f"{type(exc).__name__}: {exc}"

    searches = {s.name for s in config.searches}
    kept: list[DiscoveredRepo] = []
    for key in sorted(set(before) | set(accepted)):
        repo = accepted.get(key) or before[key]
        found_by = tuple(s for s in repo.found_by if s in searches)
        if not found_by:
            why: str | None = "search removed"
        elif key in accepted:
            why = None
        elif key in config.exclude_repos:
            why = "excluded"
        else:  # refused now, or not seen this run: checked against the gate as configured now
            why = refused.get(key) or gate_reason(repo, config.gate)
        if why:
            if key in before:
                result.dropped.append((repo.full_name, why))
        else:
            kept.append(repo.model_copy(update={"found_by": found_by}))
    result.repos = kept
    return result


def write_discovered(path: Path, repos: Iterable[DiscoveredRepo]) -> None:
    """Write the managed file atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(
        {"repositories": [r.model_dump(mode="json", exclude_defaults=False) for r in repos]},
        sort_keys=False,
        allow_unicode=True,
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(HEADER + body, encoding="utf-8")
    os.replace(tmp, path)
