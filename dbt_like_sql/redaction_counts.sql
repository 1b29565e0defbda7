-- What redaction replaced, per kind of secret or personal data: findings, and current files affected.
{{ config(materialized='view') }}
SELECT kind, count(*) AS findings, count(DISTINCT source || ':' || path) AS files
FROM (
    SELECT source, path, unnest(redactions) AS kind
    FROM {{ ref('redacted_files') }}
)
GROUP BY kind
ORDER BY findings DESC, kind
