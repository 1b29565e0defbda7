"""Code stored as dataset rows (The Stack layout): local Parquet and JSONL files, or a Hugging Face hub dataset.

Files are streamed in record batches (Parquet by row group, JSONL line by line), never loaded whole. Each row
becomes a code file at `<repo>/<path>` with its own language, licence and star/fork counts when the dataset
has them. Local files are fingerprinted by mtime+size+sha256, so an unchanged file is never read again.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from codelupe_pipeline.ingest.languages import detect_language, language_from_name
from codelupe_pipeline.ingest.scan import ScanRules, SkipReason, Skips, decode_code, line_count, skip_by_name
from codelupe_pipeline.ingest.sources import DatasetColumns, DatasetSource
from codelupe_pipeline.ingest.store import FileRow

BATCH_ROWS = 1000
SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
_NO_LICENSE = {"", "noassertion", "none", "no_license", "other"}


class DatasetError(RuntimeError):
    """A dataset source cannot be read; the message names the source and the file or hub id."""


def resolve_data_files(spec: str) -> list[Path]:
    """The data files a `path:` names: one file, every data file under a directory, or a glob; sorted."""
    expanded = os.path.expanduser(spec)
    if os.path.isdir(expanded):
        found = [p for p in Path(expanded).rglob("*") if p.is_file() and p.name.endswith(SUFFIXES)]
    elif glob.has_magic(expanded):
        found = [Path(p) for p in glob.glob(expanded, recursive=True) if os.path.isfile(p)]
    else:
        found = [Path(expanded)] if os.path.exists(expanded) else []
    if not found:
        raise DatasetError(f"{spec}: no data files found (expected {', '.join(SUFFIXES)})")
    unsupported = [p for p in found if not p.name.endswith(SUFFIXES)]
    if unsupported:
        raise DatasetError(f"{unsupported[0]}: not a Parquet or JSONL file (expected {', '.join(SUFFIXES)})")
    return sorted(p.resolve() for p in found)


def data_file_fingerprint(path: Path, previous: str | None) -> str:
    """`mtime_ns:size:sha256`; the hash is reused when mtime and size are unchanged (no re-read)."""
    st = path.stat()
    stamp = f"{st.st_mtime_ns}:{st.st_size}"
    if previous and previous.rsplit(":", 1)[0] == stamp:
        return previous
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"{stamp}:{digest.hexdigest()}"


def content_hash(fingerprint: str) -> str:
    return fingerprint.rsplit(":", 1)[-1]


def manifest_hash(hashes: Mapping[str, str]) -> str:
    """One id for a set of files and their content hashes."""
    digest = hashlib.sha256()
    for origin, sha in sorted(hashes.items()):
        digest.update(f"{origin}\0{sha}\0".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def _wanted(columns: DatasetColumns) -> set[str]:
    return {name for names in columns.model_dump().values() for name in names}


def _open_text(path: Path) -> IO[str]:
    # Undecodable bytes survive as surrogates, so one bad line is one skipped record, not a failed file.
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape")
    return open(path, encoding="utf-8", errors="surrogateescape")


def _jsonl_records(path: Path, skips: Skips) -> Iterator[dict[str, Any]]:
    with _open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                skips.add(SkipReason.BAD_RECORD, f"{path.name}:{number}")
                continue
            yield record


def read_record_batches(path: Path, columns: DatasetColumns, skips: Skips) -> Iterator[list[dict[str, Any]]]:
    """Batches of records of one local data file, reading only the columns the mapping can use."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from None
        present = [name for name in parquet.schema_arrow.names if name in _wanted(columns)]
        for record_batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=present):
            yield record_batch.to_pylist()
        return
    batch: list[dict[str, Any]] = []
    for record in _jsonl_records(path, skips):
        batch.append(record)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def hub_revision(source: DatasetSource) -> str:
    """The commit id of a hub dataset at the requested revision; needs the network."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise DatasetError(
            f"dataset source {source.name!r}: hub id {source.hub_id!r} needs the network, but HF_HUB_OFFLINE is "
            "set; download the files and point `path:` at them instead"
        )
    from huggingface_hub import HfApi

    try:
        info = HfApi().dataset_info(str(source.hub_id), revision=source.revision)
    except Exception as exc:  # offline, unknown id, gated dataset: all end here, named
        raise DatasetError(
            f"dataset source {source.name!r}: cannot reach hub dataset {source.hub_id!r} "
            f"({type(exc).__name__}: {exc}); is the machine online, and is the id right?"
        ) from None
    return f"hub-{info.sha}"


def read_hub_batches(source: DatasetSource) -> Iterator[list[dict[str, Any]]]:
    """Record batches streamed from a hub dataset (nothing is downloaded whole)."""
    from datasets import load_dataset

    try:
        stream = load_dataset(
            str(source.hub_id),
            name=source.config,
            data_dir=source.data_dir,
            split=source.split,
            revision=source.revision,
            streaming=True,
        )
        for batch in stream.iter(batch_size=BATCH_ROWS):
            keys = list(batch)
            yield [dict(zip(keys, values, strict=True)) for values in zip(*(batch[k] for k in keys), strict=True)]
    except Exception as exc:
        raise DatasetError(
            f"dataset source {source.name!r}: reading hub dataset {source.hub_id!r} failed: {exc}"
        ) from exc


def _first(record: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        value = record.get(name)
        if value is not None:
            return value
    return None


def _license(value: Any) -> str | None:
    """An SPDX id, or an `A OR B` expression when the dataset lists several licences for the repository."""
    items = value if isinstance(value, list | tuple) else [value]
    ids = sorted({str(v).strip() for v in items if v is not None and str(v).strip().lower() not in _NO_LICENSE})
    return " OR ".join(ids) if ids else None


def _count(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class RowConverter:
    """Turns dataset records into code file rows, applying the same rules as files on disk."""

    source: DatasetSource
    rules: ScanRules
    skips: Skips
    origin: str | None = None
    rows_seen: int = 0

    def convert(self, records: Sequence[Mapping[str, Any]]) -> list[FileRow]:
        columns = self.source.columns
        out: list[FileRow] = []
        for record in records:
            self.rows_seen += 1
            index = self.rows_seen
            raw_path = _first(record, columns.path)
            repo = _first(record, columns.repo)
            path = str(raw_path).lstrip("/") if raw_path else f"row-{index}"
            stored = f"{repo}/{path}" if repo else path
            content = _first(record, columns.content)
            if isinstance(content, str):
                try:
                    data = content.encode("utf-8")
                except UnicodeEncodeError:  # lone surrogates from a JSON \\ud800 escape
                    self.skips.add(SkipReason.UNDECODABLE, stored)
                    continue
            elif isinstance(content, bytes):
                data = content
            else:
                self.skips.add(SkipReason.BAD_RECORD, stored)
                continue
            if skip_by_name(stored, self.rules, self.skips):
                continue
            language = detect_language(path, data[:200]) or language_from_name(_first(record, columns.language))
            if language is None:
                self.skips.add(SkipReason.UNKNOWN_LANGUAGE, stored)
                continue
            if language not in self.rules.languages:
                self.skips.add(SkipReason.LANGUAGE_NOT_KEPT, stored)
                continue
            text = decode_code(data, stored, self.rules, self.skips)
            if text is None:
                continue
            sha = hashlib.sha256(data).hexdigest()
            out.append(
                FileRow(
                    path=stored,
                    sha256=sha,
                    content=text,
                    language=language,
                    size_bytes=len(data),
                    line_count=line_count(text),
                    fingerprint=sha,
                    repo=str(repo) if repo else self.source.name,
                    license=self.source.license or _license(_first(record, columns.license)),
                    stars=self.source.stars if self.source.stars is not None else _count(_first(record, columns.stars)),
                    forks=self.source.forks if self.source.forks is not None else _count(_first(record, columns.forks)),
                    origin=self.origin,
                )
            )
        return out
