"""The code sources a user declares in `sources.yaml`, validated with errors that name the file and entry.

```yaml
sources:
  - name: python-stdlib        # the default corpus when the file does not exist
    kind: python_stdlib
    max_files: 300
  - name: my-service
    kind: local
    path: ~/src/my-service
  - name: tokio
    kind: git
    url: https://github.com/tokio-rs/tokio.git
    ref: master                 # branch or tag; `commit:` pins an exact commit
  - name: stack-rust
    kind: dataset               # The Stack layout: content, path, lang, licence and star columns
    path: ~/datasets/the-stack-smol/rust/*.parquet
github:                         # discovery: repositories found here become git sources
  searches:
    - {name: rust-async, language: rust, topics: [async], min_stars: 200}
  gate: {min_stars: 10, min_forks: 3}
```

GitHub discovery writes the repositories it accepts to a managed file (`discovered_sources.yaml` in the data
directory); `load_catalog` merges them in as git sources. A source declared in `sources.yaml` with the same
name overrides a discovered one; `github.exclude_repos` drops one.
"""

from __future__ import annotations

import hashlib
import json
import sysconfig
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_REPO_PATTERN = r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$"


class SourcesFileError(ValueError):
    """The sources file cannot be used; the message names the file and the offending entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SourceBase(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Unique id; used as the Dagster partition key.")
    license: str | None = Field(default=None, description="SPDX id that overrides licence detection.")
    stars: int | None = Field(default=None, ge=0)
    forks: int | None = Field(default=None, ge=0)
    max_files: int = Field(default=0, ge=0, description="Take a deterministic sample of this many files (0 = all).")
    exclude: tuple[str, ...] = Field(default=(), description="Glob patterns of paths to leave out.")

    def repo_for(self, path: str) -> str:
        """The repository a file belongs to: the unit of the train/validation split and of dedup ranking."""
        return self.name

    def fingerprint(self) -> str:
        """Changes when the entry changes what is ingested (stars and forks only refresh metadata)."""
        entry = self.model_dump(mode="json", exclude={"stars", "forks"})
        return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:16]


class LocalSource(_SourceBase):
    kind: Literal["local"]
    path: Path = Field(description="A directory on this machine.")

    @field_validator("path")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()


class GitSource(_SourceBase):
    kind: Literal["git"]
    url: str = Field(min_length=1, description="Any URL git understands: https, ssh, file:// or a local path.")
    ref: str | None = Field(default=None, description="Branch or tag to follow; the remote's HEAD when unset.")
    commit: str | None = Field(
        default=None,
        pattern=r"^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$",
        description="Pin this commit (its full id: servers only hand out full ids to shallow fetches).",
    )

    def repo_for(self, path: str) -> str:
        return self.url


class PythonStdlibSource(_SourceBase):
    """The running interpreter's standard library: real code nobody here wrote, on every machine."""

    kind: Literal["python_stdlib"]
    max_files: int = Field(default=300, ge=0)
    # The test suite holds deliberately broken files (bad syntax, bad encodings): not training material.
    exclude: tuple[str, ...] = ("test/*", "*/test/*", "*/tests/*", "*/idle_test/*")

    @property
    def path(self) -> Path:
        return Path(sysconfig.get_paths()["stdlib"])

    def repo_for(self, path: str) -> str:
        # The stdlib is a collection of packages; each top-level module counts as one repository.
        top = PurePosixPath(path).parts[0]
        return f"{self.name}/{top.removesuffix('.py')}"


class DatasetColumns(_Strict):
    """Which column holds what; each list is tried in order (The Stack v1, v2 and smol names by default)."""

    content: tuple[str, ...] = ("content", "text", "code")
    path: tuple[str, ...] = ("path", "max_stars_repo_path", "file_path")
    repo: tuple[str, ...] = ("max_stars_repo_name", "repository_name", "repo_name", "repo")
    language: tuple[str, ...] = ("lang", "language")
    license: tuple[str, ...] = ("max_stars_repo_licenses", "licenses", "detected_licenses", "license", "gha_license_id")
    stars: tuple[str, ...] = ("max_stars_count", "stars", "star_events_count", "stargazers_count")
    forks: tuple[str, ...] = ("max_forks_count", "forks", "fork_events_count", "forks_count")


class DatasetSource(_SourceBase):
    """Code files stored as rows: local Parquet/JSONL files (a file, a directory or a glob) or a hub dataset."""

    kind: Literal["dataset"]
    path: str | None = Field(default=None, description="A .parquet/.jsonl(.gz) file, a directory or a glob.")
    hub_id: str | None = Field(default=None, description="A Hugging Face dataset id, e.g. bigcode/the-stack-smol.")
    config: str | None = Field(default=None, description="Hub dataset configuration name.")
    data_dir: str | None = Field(default=None, description="Hub dataset sub-directory, e.g. data/rust.")
    split: str = Field(default="train", description="Hub dataset split.")
    revision: str | None = Field(default=None, description="Hub dataset revision (branch, tag or commit).")
    columns: DatasetColumns = Field(default_factory=DatasetColumns)
    max_rows: int = Field(default=0, ge=0, description="Rows taken from each data file, or the hub stream (0 = all).")

    @model_validator(mode="after")
    def _one_location(self) -> DatasetSource:
        if (self.path is None) == (self.hub_id is None):
            raise ValueError("a dataset source needs exactly one of `path` (local files) or `hub_id`")
        return self


Source = Annotated[LocalSource | GitSource | PythonStdlibSource | DatasetSource, Field(discriminator="kind")]


class GitHubSearch(_Strict):
    """One repository search; its qualifiers become GitHub search syntax."""

    name: str = Field(pattern=NAME_PATTERN)
    language: str | None = Field(default=None, description="GitHub language name, e.g. rust, go, typescript.")
    topics: tuple[str, ...] = Field(default=(), description="Every topic must be set on the repository.")
    min_stars: int = Field(default=0, ge=0)
    pushed_after: date | None = Field(default=None, description="Only repositories pushed to since this date.")
    query: str = Field(default="", description="Free text or extra qualifiers, e.g. `org:rust-lang`.")
    sort: Literal["stars", "forks", "updated", "best-match"] = "stars"
    max_repos: int = Field(default=100, ge=1, le=1000, description="GitHub returns at most 1,000 per search.")

    def q(self) -> str:
        parts = [self.query.strip()] if self.query.strip() else []
        if self.language:
            parts.append(f"language:{self.language}")
        parts += [f"topic:{t}" for t in self.topics]
        if self.min_stars:
            parts.append(f"stars:>={self.min_stars}")
        if self.pushed_after:
            parts.append(f"pushed:>={self.pushed_after.isoformat()}")
        return " ".join(parts) or "stars:>=0"


class RepoGate(_Strict):
    """The original CodeLupe repo gate, every rule configurable."""

    min_stars: int = Field(default=10, ge=0)
    min_forks: int = Field(default=3, ge=0)
    exclude_words: tuple[str, ...] = Field(
        default=("tutorial", "example", "demo", "template", "boilerplate", "homework", "exercise"),
        description="Words (also as plural) that reject a repository when its name or description has them.",
    )
    languages: tuple[str, ...] = Field(default=(), description="GitHub primary languages accepted (empty = any).")
    skip_forks: bool = True
    skip_archived: bool = True
    skip_templates: bool = True
    max_size_mb: int = Field(default=2000, ge=0, description="Larger repositories are rejected (0 = no limit).")


class GitHubDiscovery(_Strict):
    searches: tuple[GitHubSearch, ...] = ()
    gate: RepoGate = Field(default_factory=RepoGate)
    exclude_repos: tuple[str, ...] = Field(default=(), description="owner/name of repositories never to add.")
    max_files_per_repo: int = Field(default=0, ge=0, description="max_files of each discovered git source.")

    @field_validator("exclude_repos")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.lower() for v in value)

    @model_validator(mode="after")
    def _unique_searches(self) -> GitHubDiscovery:
        names = [s.name for s in self.searches]
        if len(names) != len(set(names)):
            raise ValueError(f"search names must be unique: {names}")
        return self


class SourcesFile(_Strict):
    model_config = ConfigDict(extra="forbid")
    sources: list[Source] = Field(default_factory=list)
    github: GitHubDiscovery = Field(default_factory=GitHubDiscovery)


class DiscoveredRepo(_Strict):
    """A repository GitHub discovery accepted, as kept in the managed discovered-sources file."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    full_name: str = Field(pattern=_REPO_PATTERN)
    clone_url: str
    default_branch: str | None = None
    stars: int = 0
    forks: int = 0
    language: str | None = None
    description: str | None = None
    topics: tuple[str, ...] = ()
    license: str | None = None  # GitHub's SPDX id; informational, files are checked for their own licence
    size_kb: int = 0
    fork: bool = False
    archived: bool = False
    is_template: bool = False
    pushed_at: str | None = None
    found_by: tuple[str, ...] = ()
    first_seen: str | None = None
    last_seen: str | None = None

    @property
    def source_name(self) -> str:
        # Owners cannot contain dots, so `github.<owner>.<repo>` is unambiguous.
        return f"github.{self.full_name.lower().replace('/', '.', 1)}"

    def as_source(self, max_files: int = 0) -> GitSource:
        return GitSource(
            kind="git",
            name=self.source_name,
            url=self.clone_url,
            stars=self.stars,
            forks=self.forks,
            max_files=max_files,
        )


@dataclass(frozen=True)
class SourceCatalog:
    """Everything to ingest: the declared sources, then the discovered ones not overridden or excluded."""

    sources: list[Source]
    github: GitHubDiscovery = field(default_factory=GitHubDiscovery)
    discovered: frozenset[str] = frozenset()  # names of the sources that came from discovery

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def by_name(self) -> dict[str, Source]:
        return {s.name: s for s in self.sources}


def default_sources(stdlib_max_files: int = 300) -> list[Source]:
    return [PythonStdlibSource(kind="python_stdlib", name="python-stdlib", max_files=stdlib_max_files)]


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False))


def parse_sources_file(data: object, origin: str = "<sources>") -> SourcesFile:
    """Validate the parsed YAML of a sources file."""
    if data is None:
        return SourcesFile()
    try:
        parsed = SourcesFile.model_validate(data)
    except ValidationError as exc:
        raise SourcesFileError(f"{origin}: invalid sources file: {_problems(exc)}") from None
    seen: set[str] = set()
    for source in parsed.sources:
        if source.name in seen:
            raise SourcesFileError(f"{origin}: source name {source.name!r} is used twice; names must be unique")
        seen.add(source.name)
    return parsed


def parse_sources(data: object, origin: str = "<sources>") -> list[Source]:
    return list(parse_sources_file(data, origin).sources)


def _read_yaml(path: Path, what: str) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SourcesFileError(f"{path}: cannot read {what}: {exc}") from None


def load_sources(path: Path, stdlib_max_files: int = 300) -> list[Source]:
    """The sources declared in `path`, or the default corpus (the Python stdlib) when the file is absent."""
    if not path.exists():
        return default_sources(stdlib_max_files)
    return parse_sources(_read_yaml(path, "sources file"), origin=str(path))


def read_discovered(path: Path) -> list[DiscoveredRepo]:
    """The repositories in the managed discovered-sources file (none when it does not exist yet)."""
    if not path.exists():
        return []
    data = _read_yaml(path, "discovered sources file")
    items = data.get("repositories", []) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise SourcesFileError(f"{path}: expected a mapping with a `repositories` list")
    try:
        return [DiscoveredRepo.model_validate(item) for item in items]
    except ValidationError as exc:
        raise SourcesFileError(f"{path}: invalid discovered sources file: {_problems(exc)}") from None


def load_catalog(sources_file: Path, discovered_file: Path | None = None, stdlib_max_files: int = 300) -> SourceCatalog:
    """Declared sources (or the stdlib default) plus discovered repositories, declared names first."""
    if not sources_file.exists():
        return SourceCatalog(default_sources(stdlib_max_files))
    parsed = parse_sources_file(_read_yaml(sources_file, "sources file"), origin=str(sources_file))
    sources: list[Source] = list(parsed.sources)
    declared = {s.name for s in sources}
    discovered: set[str] = set()
    searches = {s.name for s in parsed.github.searches}
    if discovered_file is not None:
        for repo in read_discovered(discovered_file):
            name = repo.source_name
            if name in declared or name in discovered or repo.full_name.lower() in parsed.github.exclude_repos:
                continue  # a declared source of the same name overrides the discovered one
            if not searches.intersection(repo.found_by):
                continue  # every search that found it was removed from the sources file
            sources.append(repo.as_source(parsed.github.max_files_per_repo))
            discovered.add(name)
    return SourceCatalog(sources, parsed.github, frozenset(discovered))
