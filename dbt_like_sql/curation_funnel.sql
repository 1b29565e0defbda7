-- The filter funnel a curator reads first: rows in; for each rule, the files it dropped (the first rule
-- they failed) and the files failing it at all (a rule dropping few of many it fails sits behind another);
-- then exact duplicates, near-duplicates, benchmark contamination; rows out.
{{ config(materialized='view', columns={
    'step': 'Order in the funnel: 0 rows in, then the rules in order, 1000+ dedup and contamination, 10000 rows out',
    'stage': "rows in, dropped: <rule or dedup stage>, or rows out",
    'files': 'Files this step dropped (the first step each file failed); for rows in and out, the files there',
    'failing': 'Files failing this rule at all, whether or not an earlier step dropped them first',
    'bytes': 'Bytes of the files this step dropped',
}) }}
WITH failing AS (
    SELECT rule, count(*) AS files
    FROM (SELECT unnest(failed_rules) AS rule FROM {{ ref('file_decisions') }})
    GROUP BY rule
),
dropped AS (
    SELECT drop_reason AS rule, min(drop_step) AS step, count(*) AS files, sum(size_bytes) AS bytes
    FROM {{ ref('file_decisions') }}
    WHERE drop_reason IS NOT NULL
    GROUP BY drop_reason
)
SELECT 0 AS step, 'rows in' AS stage, count(*) AS files, NULL::BIGINT AS failing, sum(size_bytes) AS bytes
FROM {{ ref('file_decisions') }}
UNION ALL
SELECT d.step, 'dropped: ' || d.rule, d.files, coalesce(f.files, d.files), d.bytes
FROM dropped AS d
LEFT JOIN failing AS f USING (rule)
UNION ALL
SELECT 10000, 'rows out', count(*), NULL, sum(size_bytes)
FROM {{ ref('file_decisions') }}
WHERE drop_reason IS NULL
ORDER BY step
