"""SPDX licence detection from a repository's LICENSE/COPYING text."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

LICENSE_FILE_NAMES = re.compile(r"^(licen[cs]e|copying|unlicense)(\.(md|txt|rst))?$|^licen[cs]e[-_.]", re.I)

# Ordered: the more specific text first (AGPL and LGPL contain "General Public License").
_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("AGPL-3.0", re.compile(r"GNU AFFERO GENERAL PUBLIC LICENSE", re.I)),
    ("LGPL-3.0", re.compile(r"GNU LESSER GENERAL PUBLIC LICENSE\s+Version 3", re.I)),
    ("LGPL-2.1", re.compile(r"GNU LESSER GENERAL PUBLIC LICENSE\s+Version 2\.1", re.I)),
    ("GPL-3.0", re.compile(r"GNU GENERAL PUBLIC LICENSE\s+Version 3", re.I)),
    ("GPL-2.0", re.compile(r"GNU GENERAL PUBLIC LICENSE\s+Version 2", re.I)),
    ("MPL-2.0", re.compile(r"Mozilla Public License,?\s+(Version|v\.?)\s*2\.0", re.I)),
    ("Apache-2.0", re.compile(r"Apache License,?\s+Version 2\.0", re.I)),
    ("PSF-2.0", re.compile(r"PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2", re.I)),
    (
        "Unlicense",
        re.compile(r"This is free and unencumbered software released into the public domain", re.I),
    ),
    ("BSL-1.0", re.compile(r"Boost Software License", re.I)),
    (
        "ISC",
        re.compile(r"Permission to use, copy, modify, and/or distribute this software for any purpose", re.I),
    ),
    (
        "MIT",
        re.compile(r"Permission is hereby granted, free of charge, to any person obtaining a copy", re.I),
    ),
    ("BSD-3-Clause", re.compile(r"Neither the name of .{1,200}? nor the names of", re.I | re.S)),
    ("BSD-2-Clause", re.compile(r"Redistribution and use in source and binary forms", re.I)),
    ("CC0-1.0", re.compile(r"CC0 1\.0 Universal", re.I)),
]

# Licences that allow training and redistribution without copyleft obligations (The Stack's notion).
PERMISSIVE = frozenset(
    {"MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Unlicense", "PSF-2.0", "BSL-1.0", "CC0-1.0",
     "0BSD", "Zlib"}
)  # fmt: skip


def is_license_file(path: str) -> bool:
    """A licence file at the root of a repository (nested ones belong to vendored code)."""
    parts = PurePosixPath(path).parts
    return len(parts) == 1 and bool(LICENSE_FILE_NAMES.match(parts[0]))


def detect_spdx(text: str) -> str | None:
    """The SPDX id of a licence text, or None when it matches none of the known licences."""
    head = text[:20_000]
    for spdx, pattern in _RULES:
        if pattern.search(head):
            return spdx
    return None
