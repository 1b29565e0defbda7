"""Secret and personal-data detection: every kind found and redacted, the anchors' false positives left alone,
and DuckDB's pre-selection never missing a file the detectors would flag."""

from __future__ import annotations

import duckdb
import pytest

from codelupe_pipeline.curate import secrets

# One realistic line per kind, and the exact value that must disappear.
FINDINGS = {
    "private_key": (
        'KEY = """-----BEGIN RSA PRIVATE KEY-----\n'
        + "MIIEowIBAAKCAQEA7bq8Vx2Lm0Qk3Zr4Tn9Wc6Yh1Jd5Fs8Gp2Ue7Ri0Ka3\n" * 3
        + '-----END RSA PRIVATE KEY-----"""',
        "MIIEowIBAAKCAQEA7bq8Vx2Lm0Qk3Zr4Tn9Wc6Yh1Jd5Fs8Gp2Ue7Ri0Ka3",
    ),
    "aws_access_key_id": ('aws_key = "AKIAQ3EGRTBW7NFJ2MXP"', "AKIAQ3EGRTBW7NFJ2MXP"),
    "aws_secret_access_key": (
        'AWS_SECRET_ACCESS_KEY = "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"',
        "q8Zr4mKc1TfW9vXbN2pLs7YhD3gJ6uEo0aRiQ5tB",
    ),
    "github_token": (
        "token = 'ghp_R8kx2Lm9Qw4Zt7Vb1Nc6Hj3Fd5Sa0Gp8Ye2Ur'",
        "ghp_R8kx2Lm9Qw4Zt7Vb1Nc6Hj3Fd5Sa0Gp8Ye2Ur",
    ),
    "slack_token": ('SLACK = "xoxb-2481736092-9938475610-Kq8RmZ2xTbW4nLp7VdYs"', "xoxb-2481736092-9938475610"),
    "slack_webhook": (
        'HOOK = "https://hooks.slack.com/services/T024BE7LD/B08KQ2L3M/kZ8r2Lq0Xw9Tb4Vn7Yc1"',
        "T024BE7LD/B08KQ2L3M",
    ),
    "stripe_key": ('stripe.api_key = "sk_live_51H8kQ2Lm9Zx4Tb7Wc1Vn6Rj3"', "sk_live_51H8kQ2Lm9Zx4Tb7Wc1Vn6Rj3"),
    "google_api_key": ('MAPS = "AIzaSyB7kQ2Lm9Zx4Tb7Wc1Vn6Rj3Hd8Fs0Gp5U"', "AIzaSyB7kQ2Lm9Zx4Tb7Wc1Vn6Rj3Hd8Fs0Gp5U"),
    "huggingface_token": ('HF = "hf_kQ2Lm9Zx4Tb7Wc1Vn6Rj3Hd8Fs0Gp5UeYa"', "hf_kQ2Lm9Zx4Tb7Wc1Vn6Rj3Hd8Fs0Gp5UeYa"),
    "openai_api_key": (
        'client = OpenAI(api_key="sk-proj-kQ2Lm9Zx4Tb7Wc1Vn6RjT3BlbkFJ3Hd8Fs0Gp5UeYa2Lm9Zx")',
        "kQ2Lm9Zx4Tb7Wc1Vn6RjT3BlbkFJ",
    ),
    "npm_token": ("//registry.npmjs.org/:_authToken=npm_kQ2Lm9Zx4Tb7Wc1Vn6Rj3Hd8Fs0Gp5UeYa2L", "npm_kQ2Lm9Zx4Tb7"),
    "jwt": (
        'auth = "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.Qm9ndXNTaWduYXR1cmU"',
        "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
    ),
    "url_password": ('DATABASE_URL = "postgres://app:Pr0dPassw0rd@db.internal.corp:5432/app"', "Pr0dPassw0rd"),
    "generic_secret": ('client_secret = "Zq83Kd92Lx0Pw7Rt5Nm2"', "Zq83Kd92Lx0Pw7Rt5Nm2"),
    "email": ("# Maintainer: Jane Doe <jane.doe@corp-mail.net>", "jane.doe@corp-mail.net"),
    "ipv4": ('UPSTREAM = "52.14.201.7"', "52.14.201.7"),
    "ipv6": ('UPSTREAM6 = "2a00:1450:4001:81c::200e"', "2a00:1450:4001:81c::200e"),
}

# The anchors' false-positive filters: none of these is a secret or personal data.
NOT_FINDINGS = [
    'request_id = "123e4567-e89b-12d3-a456-426614174000"',  # UUID
    'api_key = "${API_KEY}"',  # templated
    'password = "{{ vault.password }}"',
    'token = os.environ["GITHUB_TOKEN"]',  # indirect reference
    'secret = "abcdefghijklmnopqrstuvwxyz"',  # sequential
    'api_key = "0123456789abcdef0123"',
    'token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"',  # hash on a hash line
    'ACCESS_TOKEN_HEADER = "X-Authorization-Token-Value"',  # an identifier, no digit
    'aws_key = "AKIAIOSFODNN7EXAMPLE"',  # AWS's documented example
    'contact = "someone@example.com"',  # example domain
    'remote = "git@github.com:org/repo.git"',
    'HOST = "192.168.1.20"',  # private
    'LOOPBACK = "127.0.0.1"',
    'DNS = "8.8.8.8"',  # well-known resolver, not personal data
    '__version__ = "1.2.3.4"',  # version number
    "release v2.10.4.1 of the tool",
    'parts = "1.2.3.4.5"',  # longer dotted run
    "let v = std::vec::Vec::new(); x[1::2]; a::b;",  # paths and slices, not IPv6
    'url = "http://user:password@example.com/"',  # example credentials
    'BEGIN = "-----BEGIN RSA PRIVATE KEY-----"',  # a marker, not a key
    "@decorator\ndef f(x): return x @ y.T",
]


@pytest.mark.parametrize("kind", FINDINGS)
def test_each_kind_is_found_and_redacted(kind: str) -> None:
    text, value = FINDINGS[kind]
    redacted, kinds = secrets.redact(text)
    assert kinds == [kind]
    assert value not in redacted
    assert secrets.DETECTORS_BY_KIND[kind].placeholder in redacted
    assert secrets.redact(redacted) == (redacted, []), "redacting twice changes nothing"


@pytest.mark.parametrize("text", NOT_FINDINGS)
def test_false_positives_are_left_alone(text: str) -> None:
    assert secrets.find_secrets(text) == []


def test_only_the_secret_is_replaced_and_the_code_around_it_stays() -> None:
    text = 'import os\n\nDB = "postgres://app:Pr0dPassw0rd@db.internal.corp/app"\nprint(DB)  # 52.14.201.7\n'
    redacted, kinds = secrets.redact(text)
    assert redacted == 'import os\n\nDB = "postgres://app:<PASSWORD>@db.internal.corp/app"\nprint(DB)  # <IP_ADDRESS>\n'
    assert kinds == ["url_password", "ipv4"]


def test_low_entropy_values_are_not_generic_secrets() -> None:
    assert secrets.find_secrets('password = "aaaaaaaaaaaaaaaa1"') == []
    assert [f.kind for f in secrets.find_secrets('password = "aaaaaaaaaaaaaaaa1"', min_entropy=0.1)] == [
        "generic_secret"
    ]


def test_duckdb_prefilter_selects_every_file_with_a_finding() -> None:
    """The RE2 pre-selection must be a superset of the Python detectors, or a secret would slip through."""
    # Emails whose domain has a one-letter label once slipped past the pre-selection unredacted.
    more = ["# Contact: jane@mail.x.org", "x@a.b.cc wrote this"]
    texts = [text for text, _ in FINDINGS.values()] + more + NOT_FINDINGS + ["def add(a, b):\n    return a + b\n"]
    con = duckdb.connect()
    selected = [
        bool(con.execute("SELECT regexp_matches(?, ?)", [text, secrets.PREFILTER]).fetchone()[0])  # type: ignore[index]
        for text in texts
    ]
    for text, is_selected in zip(texts, selected, strict=True):
        if secrets.find_secrets(text):
            assert is_selected, text
    assert all(secrets.find_secrets(text) for text in more)
    assert not selected[-1], "plain code is not pre-selected"


def test_duckdb_kind_preselection_never_changes_the_findings() -> None:
    """`possible_kinds_sql` may only skip detectors that would find nothing (DuckDB lowercases beyond ASCII)."""
    texts = [text for text, _ in FINDINGS.values()] + NOT_FINDINGS
    texts += ["\u212aEY = 'x'\ntoken = \"" + FINDINGS["generic_secret"][1] + '"', "\n".join(texts)]
    con = duckdb.connect()
    for text in texts:
        row = con.execute(f"SELECT {secrets.possible_kinds_sql('t')} FROM (SELECT lower(?) AS t)", [text]).fetchone()
        assert row is not None
        kinds = set(row[0])
        assert secrets.find_secrets(text, kinds=kinds) == secrets.find_secrets(text), text
        assert {f.kind for f in secrets.find_secrets(text)} <= kinds
    plain = con.execute(f"SELECT {secrets.possible_kinds_sql('t')} FROM (SELECT lower(?) AS t)", ["x = 1\n"]).fetchone()
    assert plain is not None and "generic_secret" not in plain[0], "a file without a secret name skips that detector"
