-- Every current file with its content after redaction: what every rule, sample and snapshot reads.
-- `sha256` is the hash of that content; `raw_sha256` the hash of what ingestion stored.
{{ config(materialized='view') }}
SELECT
    f.source,
    f.repo,
    f.path,
    f.language,
    f.license,
    f.stars,
    f.forks,
    coalesce(r.sha256, f.sha256) AS sha256,
    f.sha256 AS raw_sha256,
    coalesce(r.content, f.content) AS content,
    coalesce(r.kinds, []) AS redactions
FROM {{ ref('stg_raw_files') }} AS f
LEFT JOIN {{ ref('secret_redactions') }} AS r ON r.raw_sha256 = f.sha256
