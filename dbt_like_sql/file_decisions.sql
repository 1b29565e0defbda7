-- The decision on every current file: kept (drop_reason NULL) or the first step that dropped it, in funnel
-- order: the licence and quality rules, then exact duplicates, near-duplicates and benchmark contamination.
-- `drop_detail` says why in words (the value that failed a rule, the copy that was kept, the task matched).
{{ config(materialized='table', tests={'not_null': ['source', 'path', 'drop_step']}) }}
SELECT
    v.source,
    v.repo,
    v.path,
    v.language,
    v.license,
    v.stars,
    v.forks,
    v.sha256,
    v.size_bytes,
    v.line_count,
    v.quality_score,
    v.failed_rules,
    CASE
        WHEN v.drop_reason IS NOT NULL THEN v.drop_reason
        WHEN d.path IS NULL THEN 'exact_duplicate'
        WHEN n.sha256 IS NOT NULL THEN 'near_duplicate'
        WHEN c.sha256 IS NOT NULL THEN 'benchmark_contamination'
    END AS drop_reason,
    CASE
        WHEN v.drop_reason IS NOT NULL THEN v.drop_detail
        WHEN d.path IS NULL THEN 'copy of ' || e.source || ':' || e.path
        WHEN n.sha256 IS NOT NULL THEN 'near copy of ' || n.kept_source || ':' || n.kept_path
        WHEN c.sha256 IS NOT NULL
            THEN format('{} {} {} ({:.0f}% of its n-grams)', c.benchmark, c.task_id, c.part, 100 * c.overlap)
    END AS drop_detail,
    CASE
        WHEN v.drop_reason IS NOT NULL THEN v.drop_step
        WHEN d.path IS NULL THEN 1001
        WHEN n.sha256 IS NOT NULL THEN 1002
        WHEN c.sha256 IS NOT NULL THEN 1003
        ELSE 9999
    END AS drop_step
FROM {{ ref('file_verdicts') }} AS v
LEFT JOIN {{ ref('deduped_files') }} AS d ON d.source = v.source AND d.path = v.path
LEFT JOIN {{ ref('deduped_files') }} AS e ON e.sha256 = v.sha256 AND v.drop_reason IS NULL
LEFT JOIN {{ ref('near_duplicates') }} AS n ON n.source = v.source AND n.path = v.path
LEFT JOIN {{ ref('contaminated_files') }} AS c ON c.sha256 = v.sha256 AND d.path IS NOT NULL
