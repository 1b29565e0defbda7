"""Secrets and personal data in source code: detection with the anchors' false-positive filters, and redaction.

Kinds follow BigCode's PII pipeline for The Stack (detect-secrets plugins plus email and IP regexes):
cloud and SaaS keys with a fixed shape (AWS, GitHub, Slack, Stripe, Google, Hugging Face, OpenAI, npm), JWTs,
private key blocks, passwords in URLs, high-entropy values assigned to names that say "secret", emails and
public IP addresses. Each finding is replaced by a placeholder naming its kind (`<AWS_ACCESS_KEY_ID>`,
`<EMAIL>`, ...): deterministic, so a snapshot's version (a hash of its content) is stable from run to run,
and impossible to mistake for a real value.

Speed: DuckDB runs one cheap RE2 regex (`PREFILTER`, the union of every detector's trigger) over all files
at C++ speed; only the files it matches (a fifth of a typical corpus) are searched by the exact Python
patterns and their validators.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache

DEFAULT_MIN_ENTROPY = 3.0  # bits per character a keyword-assigned value needs to count as a secret

# Values that are documented fakes or placeholders, not secrets (AWS's own examples end in EXAMPLE).
_PLACEHOLDER_WORDS = re.compile(
    r"example|sample|dummy|fake|placeholder|changeme|change_me|your|redacted|xxxx|\*\*\*|<|>|\.\.\.", re.I
)
_TEMPLATED = re.compile(r"\$\{|\$\(|\{\{|\{[a-z_]*\}|%\(|%s|^\$|^env[:.]|^os\.|^process\.env", re.I)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_HASH_WORDS = re.compile(r"sha|md5|hash|digest|checksum|crc|fingerprint|etag", re.I)
_SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz" * 2,
    "0123456789" * 3,
    "0123456789abcdefghijklmnopqrstuvwxyz" * 2,
    "0123456789abcdef" * 3,
    "qwertyuiopasdfghjklzxcvbnm",
)
# Public resolvers everyone hard-codes: configuration, not anybody's personal data.
_WELL_KNOWN_IPS = frozenset(
    {"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112", "208.67.222.222",
     "208.67.220.220", "2001:4860:4860::8888", "2001:4860:4860::8844", "2606:4700:4700::1111",
     "2606:4700:4700::1001"}
)  # fmt: skip
_NON_PERSONAL_EMAIL_DOMAINS = re.compile(r"(^|\.)(example\.(com|org|net)|localhost|test|invalid|example)$", re.I)


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int  # span of the text replaced by the placeholder
    end: int

    @property
    def placeholder(self) -> str:
        return DETECTORS_BY_KIND[self.kind].placeholder


Span = tuple[int, int]
# (match, text, min_entropy) -> the span to redact, or None when the match is not a finding.
Validator = Callable[[re.Match[str], str, float], Span | None]


@dataclass(frozen=True)
class Detector:
    """One kind of finding.

    `trigger` is an RE2 regex (DuckDB's engine) that matches wherever `pattern` could: DuckDB runs the union
    of all triggers over every file, and only the files it matches are searched here. Here `pattern` runs
    only when the file holds one of the `requires` substrings, over the text itself or, when `lowercase`,
    over its ASCII-lowercased view (same positions). Patterns start with a literal where they can, which
    Python's regex engine finds at memchr speed. `validate` applies the false-positive filters.
    """

    kind: str
    trigger: str
    pattern: str
    placeholder: str
    validate: Validator
    requires: tuple[str, ...] = ()  # lowercase substrings; empty = always search
    lowercase: bool = False

    @property
    def compiled(self) -> re.Pattern[str]:
        return _compiled(self.pattern)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's own character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _is_sequential(value: str) -> bool:
    lowered = value.lower()
    return any(lowered in sequence for sequence in _SEQUENCES)


def _is_word_char(text: str, index: int) -> bool:
    return 0 <= index < len(text) and (text[index].isalnum() or text[index] == "_")


def _line_around(text: str, start: int, end: int) -> tuple[str, str]:
    """The text of the line before `start`, and after `end`."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    return text[line_start:start], text[end : line_end if line_end >= 0 else len(text)]


def _value(match: re.Match[str]) -> Span:
    group = "value" if "value" in match.re.groupindex else 0
    return match.start(group), match.end(group)


def _token(match: re.Match[str], text: str, min_entropy: float) -> Span | None:
    """A fixed-shape key: a whole word, not a documented example or a placeholder."""
    start, end = _value(match)
    if _is_word_char(text, start - 1) or _is_word_char(text, end):
        return None
    return None if _PLACEHOLDER_WORDS.search(text[start:end]) else (start, end)


def _private_key(match: re.Match[str], text: str, min_entropy: float) -> Span | None:
    """A PEM block with a key in it; `"-----BEGIN RSA PRIVATE KEY-----"` alone is a marker, not a key."""
    body = match.group("body")
    return (match.start(), match.end()) if sum(c.isalnum() for c in body) >= 64 else None


def _jwt(match: re.Match[str], text: str, min_entropy: float) -> Span | None:
    span = _token(match, text, min_entropy)
    if span is None:
        return None
    header = text[span[0] : span[1]].split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return span if isinstance(decoded, dict) and {"alg", "typ"} & set(decoded) else None


def _url_password(match: re.Match[str], text: str, min_entropy: float) -> Span | None:
    start, end = _value(match)
    value = text[start:end]
    if _TEMPLATED.search(value) or _PLACEHOLDER_WORDS.search(value) or value.lower() in _NOT_PASSWORDS:
        return None
    host = match.group("host").rstrip(".")
    return None if _NON_PERSONAL_EMAIL_DOMAINS.search(host) else (start, end)


def _generic_secret(match: re.Match[str], text: str, min_entropy: float) -> Span | None:
    """A quoted high-entropy value assigned to a name that says secret, with BigCode's false-positive filters."""
    start, end = _value(match)
    value = text[start:end]
    if match.group("close") != match.group("open") or not any(c.isdigit() for c in value):
        return None  # identifiers, words, dotted names (ACCESS_TOKEN_KEY, auth.token.header) have no digit
    if _PLACEHOLDER_WORDS.search(value) or _TEMPLATED.search(value) or _UUID.match(value):
        return None
    if "://" in value or _is_sequential(value):
        return None  # URLs; 0123456789abcdef...
    if _HEX_HASH.fullmatch(value) and _HASH_WORDS.search(_line_around(text, start, end)[0] + value):
        return None  # a 32/40/64-hex digest on a line that says "sha", "md5", "hash": not a secret
    return (start, end) if shannon_entropy(value) >= min_entropy else None


def _email(match: re.Match[str], text: str, min_entropy: float) -> Span | None:
    """`@domain.tld` found; extend left over the local part."""
    at, end = match.start(), match.end()
    start = at
    while start > 0 and at - start < 64 and text[start - 1] in _EMAIL_LOCAL_CHARS:
        start -= 1
    while start < at and not text[start].isalnum():
        start += 1
    if start == at or _is_word_char(text, end) or text[end : end + 1] == "-":
        return None
    local, domain = text[start:at], text[at + 1 : end]
    if local.lower() == "git" or _NON_PERSONAL_EMAIL_DOMAINS.search(domain):
        return None
    if _URL_USERINFO.search(_line_around(text, start, end)[0]):
        return None  # scheme://user:password@host: the url_password detector's business
    return start, end


def _grow(text: str, start: int, end: int, chars: frozenset[str], limit: int) -> Span:
    """Extend a span left and right over characters in `chars`, at most `limit` on each side."""
    low, high = max(0, start - limit), min(len(text), end + limit)
    while start > low and text[start - 1] in chars:
        start -= 1
    while end < high and text[end] in chars:
        end += 1
    return start, end


def _ip_address(match: re.Match[str], text: str, min_entropy: float) -> Span | None:
    """A public IPv4 or IPv6 address, not a version number (1.2.3.4 after "version", or in 1.2.3.4.5)."""
    chars = _IPV6_CHARS if ":" in match.group(0) else _DIGITS
    start, end = _grow(text, match.start(), match.end(), chars, 40)
    if _is_word_char(text, start - 1) or _is_word_char(text, end):
        return None
    value = text[start:end]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if not address.is_global or address.is_multicast or value in _WELL_KNOWN_IPS:
        return None
    if address.version == 6:
        # `a::b` or `x[1::2]` parse as addresses; real ones in code have more and longer groups.
        groups = [g for g in value.split(":") if g]
        return (start, end) if len(groups) >= 3 and any(len(g) == 4 for g in groups) else None
    before, after = _line_around(text, start, end)
    if _VERSION_BEFORE.search(before[-40:]) or re.match(r"\.\d", after):
        return None
    return start, end


def _slack_webhook(match: re.Match[str], text: str, min_entropy: float) -> Span | None:
    span = _token(match, text, min_entropy)
    if span is not None and text[max(0, span[0] - 8) : span[0]] == "https://":
        return span[0] - 8, span[1]
    return span


SECRET_NAMES = (
    "secret", "token", "passw", "pwd", "apikey", "api_key", "access_key", "accesskey", "auth_key",
    "authkey", "private_key", "privatekey", "credential",
)  # fmt: skip
_SECRET_NAME = "(?:" + "|".join(re.escape(name).replace("_", "_?") for name in SECRET_NAMES) + ")"
_HEX_HASH = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_NOT_PASSWORDS = frozenset({"password", "passwd", "pass", "pwd", "secret", "token", "x", "user"})
_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@]*$")
_EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:")
_DIGITS = frozenset("0123456789.")
# Dotted numbers that are versions, sections or OIDs, not addresses: "version 1.2.3.4", "v1.2.3.4", "RFC 1.2.3.4".
_VERSION_BEFORE = re.compile(
    r"(version|ver|release|section|spec|rfc|oid|identifier|\bv)\W{0,3}[^\s]{0,12}\W*$|[\d.]$", re.I
)

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key",
        trigger=r"PRIVATE KEY",
        pattern=r"-----BEGIN[A-Z ]{0,32}PRIVATE KEY(?: BLOCK)?-----"
        r"(?P<body>(?:[A-Za-z0-9+/=\s\\:,.]|Proc-Type|DEK-Info)*)"
        r"(?:-----END[A-Z ]{0,32}PRIVATE KEY(?: BLOCK)?-----)?",
        placeholder="<PRIVATE_KEY>",
        validate=_private_key,
        requires=("private key",),
    ),
    Detector(
        "aws_access_key_id",
        trigger=r"(?:AKIA|ASIA|ABIA|ACCA|A3T)[A-Z0-9]{12}",
        pattern=r"A(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16}",
        placeholder="<AWS_ACCESS_KEY_ID>",
        validate=_token,
        requires=("akia", "asia", "abia", "acca", "a3t"),
    ),
    Detector(
        "aws_secret_access_key",
        trigger=r"(?i:aws)[^\n]*(?i:secret|key)[^\n]*[\"'][A-Za-z0-9/+]{40}[\"']",
        pattern=r"aws[^\n]{0,32}?(?:secret|key)[^\n]{0,32}?[\"'](?P<value>[a-z0-9/+]{40})[\"']",
        placeholder="<AWS_SECRET_ACCESS_KEY>",
        validate=_token,
        requires=("aws",),
        lowercase=True,
    ),
    Detector(
        "github_token",
        trigger=r"gh[pousr]_[A-Za-z0-9]{30}|github_pat_",
        pattern=r"g(?:h[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_[A-Za-z0-9_]{22,255})",
        placeholder="<GITHUB_TOKEN>",
        validate=_token,
        requires=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Detector(
        "slack_token",
        trigger=r"xox[abposr]-",
        pattern=r"xox[abposr]-[0-9A-Za-z]{1,64}(?:-[0-9A-Za-z]{1,64}){1,6}",
        placeholder="<SLACK_TOKEN>",
        validate=_token,
        requires=("xox",),
    ),
    Detector(
        "slack_webhook",
        trigger=r"hooks\.slack\.com/services/",
        pattern=r"hooks\.slack\.com/services/T[A-Za-z0-9_]{4,}/B[A-Za-z0-9_]{4,}/[A-Za-z0-9_]{8,}",
        placeholder="<SLACK_WEBHOOK_URL>",
        validate=_slack_webhook,
        requires=("hooks.slack.com",),
    ),
    Detector(
        "stripe_key",
        trigger=r"[rs]k_(?:live|test)_",
        pattern=r"[rs]k_(?:live|test)_[0-9A-Za-z]{24,247}",
        placeholder="<STRIPE_KEY>",
        validate=_token,
        requires=("k_live_", "k_test_"),
    ),
    Detector(
        "google_api_key",
        trigger=r"AIza[0-9A-Za-z_-]{30}",
        pattern=r"AIza[0-9A-Za-z_-]{35}",
        placeholder="<GOOGLE_API_KEY>",
        validate=_token,
        requires=("aiza",),
    ),
    Detector(
        "huggingface_token",
        trigger=r"hf_[A-Za-z0-9]{30}",
        pattern=r"hf_[A-Za-z0-9]{34,40}",
        placeholder="<HF_TOKEN>",
        validate=_token,
        requires=("hf_",),
    ),
    Detector(
        "openai_api_key",
        trigger=r"T3BlbkFJ",
        pattern=r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}",
        placeholder="<OPENAI_API_KEY>",
        validate=_token,
        requires=("t3blbkfj",),
    ),
    Detector(
        "npm_token",
        trigger=r"npm_[A-Za-z0-9]{30}",
        pattern=r"npm_[A-Za-z0-9]{36}",
        placeholder="<NPM_TOKEN>",
        validate=_token,
        requires=("npm_",),
    ),
    Detector(
        "jwt",
        trigger=r"eyJ[A-Za-z0-9_-]{8}",
        pattern=r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{0,512}",
        placeholder="<JWT>",
        validate=_jwt,
        requires=("eyj",),
    ),
    Detector(
        "url_password",
        trigger=r"://[^\s/@]+:[^\s/@]+@",
        pattern=r"://[^\s:/@\"'`]{1,64}:(?P<value>[^\s:/@\"'`]{1,128})@(?P<host>[A-Za-z0-9.-]+)",
        placeholder="<PASSWORD>",
        validate=_url_password,
        requires=("://",),
    ),
    Detector(
        "generic_secret",
        trigger="(?i:" + _SECRET_NAME + r")[^\n]*[\"'][^\"'\s]{16}",
        # name = "value", name: 'value', "name" => "value", name := "value", ... on one line
        pattern=_SECRET_NAME + r"[\w.-]{0,40}[\"'\]]?\s{0,4}(?::=|=>|==|=|:)\s{0,4}[a-z]{0,2}"
        r"(?P<open>[\"'])(?P<value>[^\"'\s]{16,256})(?P<close>[\"'])",
        placeholder="<SECRET>",
        validate=_generic_secret,
        requires=SECRET_NAMES,
        lowercase=True,
    ),
    Detector(
        "email",
        # Any number of labels before the TLD: "jane@mail.x.org" has a one-letter one.
        trigger=r"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2}",
        pattern=r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}",
        placeholder="<EMAIL>",
        validate=_email,
        requires=("@",),
    ),
    Detector(
        "ipv4",
        trigger=r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]",
        pattern=r"\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]",  # the first octet is found by growing the match
        placeholder="<IP_ADDRESS>",
        validate=_ip_address,
    ),
    Detector(
        "ipv6",
        trigger=r"[0-9A-Fa-f]?:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]",
        pattern=r":[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]",  # grown to the whole run of hex digits and colons
        placeholder="<IP_ADDRESS>",
        validate=_ip_address,
        requires=(":",),
    ),
)
DETECTORS_BY_KIND = {d.kind: d for d in DETECTORS}
KINDS = tuple(DETECTORS_BY_KIND)

# The regex DuckDB runs over every file: a file it does not match holds no finding of any detector.
PREFILTER = "|".join(f"(?:{d.trigger})" for d in DETECTORS)


def _ascii_lowercase(text: str) -> str:
    """Lowercase ASCII letters; any other character becomes `?`, so positions stay those of `text`."""
    return text.encode("ascii", "replace").decode("ascii").lower()


def possible_kinds_sql(lowered: str) -> str:
    """SQL for the list of kinds whose `requires` substrings occur in the text that `lowered` (SQL) lowercases.

    DuckDB's `lower()` lowercases more than ASCII, so this is a superset of the kinds whose substrings
    `find_secrets` finds itself: passing the list to it as `kinds` skips only detectors it would skip anyway,
    and DuckDB, not Python, scans the text for the few dozen substrings.
    """
    kinds = []
    for detector in DETECTORS:
        needles = (needle.replace("'", "''") for needle in detector.requires)
        found = " OR ".join(f"contains({lowered}, '{needle}')" for needle in needles) or "true"
        kinds.append(f"CASE WHEN {found} THEN '{detector.kind}' END")
    return f"list_filter([{', '.join(kinds)}], lambda kind: kind IS NOT NULL)"


def find_secrets(
    text: str, min_entropy: float = DEFAULT_MIN_ENTROPY, kinds: Collection[str] | None = None
) -> list[Finding]:
    """Every finding in the text, in order, without overlaps (the earlier, then the longer one wins).

    `kinds` (from `possible_kinds_sql`) leaves out the detectors whose required substrings are known absent.
    """
    lowered = _ascii_lowercase(text)
    candidates: list[Finding] = []
    for detector in DETECTORS:
        if kinds is not None and detector.kind not in kinds:
            continue
        if detector.requires and not any(needle in lowered for needle in detector.requires):
            continue
        for match in detector.compiled.finditer(lowered if detector.lowercase else text):
            span = detector.validate(match, text, min_entropy)
            if span is not None:
                candidates.append(Finding(detector.kind, *span))
    candidates.sort(key=lambda f: (f.start, -(f.end - f.start)))
    findings: list[Finding] = []
    for finding in candidates:
        if not findings or finding.start >= findings[-1].end:
            findings.append(finding)
    return findings


def redact(text: str, min_entropy: float = DEFAULT_MIN_ENTROPY) -> tuple[str, list[str]]:
    """The text with every finding replaced by its placeholder, and the kinds replaced (one per finding)."""
    findings = find_secrets(text, min_entropy)
    if not findings:
        return text, []
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts += [text[position : finding.start], finding.placeholder]
        position = finding.end
    parts.append(text[position:])
    return "".join(parts), [f.kind for f in findings]
