-- Secrets and personal data in the current files, replaced by placeholders: one row per content that had any.
-- API keys and tokens (AWS, GitHub, Slack, Stripe, Google, Hugging Face, OpenAI, npm), JWTs, private keys,
-- passwords in URLs, high-entropy values assigned to secret-sounding names, emails and public IP addresses
-- become <AWS_ACCESS_KEY_ID>, <EMAIL>, ... before any other model reads the content, so that no sample,
-- snapshot or training run ever sees them. DuckDB's regex engine pre-selects the contents that may hold a
-- finding; only those reach the Python detectors and their false-positive filters (curate/secrets.py).
{{ config(materialized='table', tests={'unique': ['raw_sha256'], 'not_null': ['content', 'sha256']}) }}
WITH candidates AS (
    SELECT sha256, content
    FROM {{ source('raw_blobs') }}
    WHERE sha256 IN (SELECT sha256 FROM {{ ref('stg_raw_files') }})
      AND may_contain_secret(content)
),
redacted AS MATERIALIZED (
    SELECT sha256 AS raw_sha256, redact_secrets(content, {{ var('secret_min_entropy') }}) AS result
    FROM candidates
)
SELECT
    raw_sha256,
    result.content AS content,
    sha256(result.content) AS sha256,
    result.kinds AS kinds
FROM redacted
WHERE len(result.kinds) > 0
