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
```
"""

from __future__ import annotations

import sysconfig
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class SourcesFileError(ValueError):
    """The sources file cannot be used; the message names the file and the offending entry."""


class _SourceBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Unique id; used as the Dagster partition key.")
    license: str | None = Field(default=None, description="SPDX id that overrides licence detection.")
    stars: int | None = Field(default=None, ge=0)
    forks: int | None = Field(default=None, ge=0)
    max_files: int = Field(default=0, ge=0, description="Take a deterministic sample of this many files (0 = all).")
    exclude: tuple[str, ...] = Field(default=(), description="Glob patterns of paths to leave out.")

    def repo_for(self, path: str) -> str:
        """The repository a file belongs to: the unit of the train/validation split and of dedup ranking."""
        return self.name


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
    commit: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{7,64}$", description="Pin this commit.")

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


Source = Annotated[LocalSource | GitSource | PythonStdlibSource, Field(discriminator="kind")]


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: list[Source] = Field(default_factory=list)


def default_sources(stdlib_max_files: int = 300) -> list[Source]:
    return [PythonStdlibSource(kind="python_stdlib", name="python-stdlib", max_files=stdlib_max_files)]


def parse_sources(data: object, origin: str = "<sources>") -> list[Source]:
    """Validate the parsed YAML of a sources file."""
    if data is None:
        return []
    try:
        parsed = SourcesFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise SourcesFileError(f"{origin}: invalid sources file: {problems}") from None
    seen: set[str] = set()
    for source in parsed.sources:
        if source.name in seen:
            raise SourcesFileError(f"{origin}: source name {source.name!r} is used twice; names must be unique")
        seen.add(source.name)
    return list(parsed.sources)


def load_sources(path: Path, stdlib_max_files: int = 300) -> list[Source]:
    """The sources declared in `path`, or the default corpus (the Python stdlib) when the file is absent."""
    if not path.exists():
        return default_sources(stdlib_max_files)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SourcesFileError(f"{path}: cannot read sources file: {exc}") from None
    return parse_sources(data, origin=str(path))
