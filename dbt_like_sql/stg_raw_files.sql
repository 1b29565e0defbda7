-- The files curation starts from: every current raw file with its content, as ingestion stored it.
-- Superseded and deleted rows stay in the raw store for history and are not curated.
{{ config(materialized='view') }}
SELECT
    f.source,
    f.repo,
    f.path,
    f.language,
    f.license,
    f.stars,
    f.forks,
    f.sha256,
    b.content
FROM {{ source('raw_files') }} AS f
JOIN {{ source('raw_blobs') }} AS b USING (sha256)
WHERE f.status = 'current'
