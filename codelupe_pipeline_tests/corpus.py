"""A small multi-language corpus the tests build on disk: real git repositories and plain directories."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

MIT_LICENSE = """MIT License

Copyright (c) 2026 CodeLupe tests

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
documentation files (the "Software"), to deal in the Software without restriction.
"""

PYTHON_FILE = '''"""Interval arithmetic helpers."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"empty interval [{self.low}, {self.high}]")

    def overlaps(self, other: "Interval") -> bool:
        return self.low <= other.high and other.low <= self.high

    def merge(self, other: "Interval") -> "Interval":
        if not self.overlaps(other):
            raise ValueError("intervals do not overlap")
        return Interval(min(self.low, other.low), max(self.high, other.high))


def merge_all(intervals: list[Interval]) -> list[Interval]:
    """Merge overlapping intervals; the result is sorted by start."""
    merged: list[Interval] = []
    for current in sorted(intervals, key=lambda i: i.low):
        if merged and merged[-1].overlaps(current):
            merged[-1] = merged[-1].merge(current)
        else:
            merged.append(current)
    return merged
'''

RUST_FILE = """//! A fixed-capacity ring buffer.

pub struct Ring<T> {
    items: Vec<Option<T>>,
    head: usize,
    len: usize,
}

impl<T> Ring<T> {
    pub fn with_capacity(capacity: usize) -> Self {
        let mut items = Vec::with_capacity(capacity);
        items.resize_with(capacity, || None);
        Ring { items, head: 0, len: 0 }
    }

    pub fn push(&mut self, value: T) -> Option<T> {
        let capacity = self.items.len();
        let tail = (self.head + self.len) % capacity;
        let evicted = self.items[tail].replace(value);
        if self.len == capacity {
            self.head = (self.head + 1) % capacity;
        } else {
            self.len += 1;
        }
        evicted
    }

    pub fn len(&self) -> usize {
        self.len
    }
}
"""

GO_FILE = """package cache

import (
	"sync"
	"time"
)

// Entry is a cached value with its expiry time.
type Entry struct {
	Value   string
	Expires time.Time
}

// TTLCache is a map whose entries expire.
type TTLCache struct {
	mu      sync.Mutex
	entries map[string]Entry
	ttl     time.Duration
}

func New(ttl time.Duration) *TTLCache {
	return &TTLCache{entries: make(map[string]Entry), ttl: ttl}
}

func (c *TTLCache) Get(key string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entry, ok := c.entries[key]
	if !ok || now.After(entry.Expires) {
		delete(c.entries, key)
		return "", false
	}
	return entry.Value, true
}

func (c *TTLCache) Set(key, value string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[key] = Entry{Value: value, Expires: now.Add(c.ttl)}
}
"""

TYPESCRIPT_FILE = """export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export async function collectAll<T>(
  fetchPage: (cursor: string | null) => Promise<Page<T>>,
  limit = 1000,
): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  do {
    const page = await fetchPage(cursor);
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== null && out.length < limit);
  return out.slice(0, limit);
}

export function chunk<T>(items: T[], size: number): T[][] {
  if (size <= 0) throw new RangeError("size must be positive");
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) {
    chunks.push(items.slice(i, i + size));
  }
  return chunks;
}
"""

DART_FILE = """class Money {
  final int cents;
  final String currency;

  const Money(this.cents, this.currency);

  Money operator +(Money other) {
    if (other.currency != currency) {
      throw ArgumentError('cannot add $currency and ${other.currency}');
    }
    return Money(cents + other.cents, currency);
  }

  @override
  String toString() {
    final units = cents ~/ 100;
    final rest = (cents % 100).toString().padLeft(2, '0');
    return '$units.$rest $currency';
  }
}

Money total(List<Money> items, String currency) {
  return items.fold(Money(0, currency), (sum, item) => sum + item);
}
"""

SQL_FILE = """-- Monthly revenue per customer, with a running total.
WITH monthly AS (
    SELECT
        customer_id,
        date_trunc('month', ordered_at) AS month,
        sum(amount_cents) AS revenue_cents
    FROM orders
    WHERE status = 'paid'
    GROUP BY customer_id, date_trunc('month', ordered_at)
)
SELECT
    customer_id,
    month,
    revenue_cents,
    sum(revenue_cents) OVER (PARTITION BY customer_id ORDER BY month) AS running_cents
FROM monthly
ORDER BY customer_id, month;
"""

GIT_REPO_FILES: dict[str, str] = {
    "LICENSE": MIT_LICENSE,
    "src/intervals.py": PYTHON_FILE,
    "src/ring.rs": RUST_FILE,
    "cache/cache.go": GO_FILE,
    "web/paging.ts": TYPESCRIPT_FILE,
    "README.md": "# fixture\n\nNot code in a kept language.\n",
}

PLAIN_DIR_FILES: dict[str, str] = {
    "lib/money.dart": DART_FILE,
    "queries/revenue.sql": SQL_FILE,
    "tools/intervals_copy.py": PYTHON_FILE,  # an exact copy of a file in the git repo
}


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    out = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def make_git_repo(root: Path, files: Mapping[str, str], message: str = "initial") -> str:
    """A real git repository with one commit of `files`; returns the commit id."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "--quiet", "--initial-branch=main")
    write_files(root, files)
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", message)
    return git(root, "rev-parse", "HEAD")


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def write_sources_file(path: Path, sources: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"sources": sources}))
    return path


def build_fixture_corpus(root: Path) -> Path:
    """A git repository and a plain directory, declared in a sources file; returns the sources file."""
    make_git_repo(root / "repo", GIT_REPO_FILES)
    write_files(root / "plain", PLAIN_DIR_FILES)
    return write_sources_file(
        root / "sources.yaml",
        [
            {"name": "fixture-repo", "kind": "git", "url": str(root / "repo")},
            {"name": "fixture-dir", "kind": "local", "path": str(root / "plain")},
        ],
    )
