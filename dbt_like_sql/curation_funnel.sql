-- The filter funnel a curator reads first: rows in, rows dropped by each rule (the first that dropped
-- them), exact duplicates removed, rows out.
{{ config(materialized='view') }}
SELECT 0 AS step, 'rows_in' AS stage, count(*) AS files, sum(size_bytes) AS bytes
FROM {{ ref('file_verdicts') }}
UNION ALL
SELECT 1, 'dropped: ' || drop_reason, count(*), sum(size_bytes)
FROM {{ ref('file_verdicts') }}
WHERE drop_reason IS NOT NULL
GROUP BY drop_reason
UNION ALL
SELECT 2, 'dropped: exact_duplicate', count(*) - (SELECT count(*) FROM {{ ref('deduped_files') }}),
       sum(size_bytes) - (SELECT coalesce(sum(size_bytes), 0) FROM {{ ref('deduped_files') }})
FROM {{ ref('file_verdicts') }}
WHERE drop_reason IS NULL
UNION ALL
SELECT 3, 'rows_out', count(*), sum(size_bytes)
FROM {{ ref('curated_files') }}
ORDER BY step, files DESC
