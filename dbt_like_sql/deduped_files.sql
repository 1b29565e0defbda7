-- Kept files with exact duplicates removed: one copy per content hash.
-- The copy kept is the best one: permissive licence first, then stars, forks, then a stable path order.
{{ config(materialized='table', tests={'unique': ['sha256']}) }}
SELECT *
FROM {{ ref('file_verdicts') }}
WHERE drop_reason IS NULL
QUALIFY row_number() OVER (
    PARTITION BY sha256
    ORDER BY
        license IS NOT NULL DESC,
        coalesce(stars, 0) DESC,
        coalesce(forks, 0) DESC,
        source,
        path
) = 1
