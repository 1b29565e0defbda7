-- Kept files with exact duplicates removed: one copy per content hash (the hash after redaction).
-- The copy kept is the best one: permissive licence, then no licence, then others; then stars, forks, and
-- a stable order. `copies` counts the files that had this content.
{{ config(materialized='table', tests={'unique': ['sha256'], 'not_null': ['source', 'path']}) }}
SELECT
    *,
    count(*) OVER (PARTITION BY sha256) AS copies
FROM {{ ref('file_verdicts') }}
WHERE drop_reason IS NULL
QUALIFY row_number() OVER (
    PARTITION BY sha256
    ORDER BY license_rank DESC, coalesce(stars, 0) DESC, coalesce(forks, 0) DESC, source, path
) = 1
