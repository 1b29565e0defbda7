-- The language mix of the curated set: files, bytes and each language's share of the bytes (a proxy for
-- its share of training tokens), largest first.
{{ config(materialized='view', columns={
    'language': 'Language detected at ingestion (extension, special file name or shebang)',
    'files': 'Curated files in this language',
    'bytes': 'Their total size in bytes',
    'byte_share': 'Share of all curated bytes (0-1); language_share_limits in vars.yaml bounds it',
}) }}
SELECT
    language,
    count(*) AS files,
    sum(size_bytes) AS bytes,
    sum(size_bytes) / sum(sum(size_bytes)) OVER () AS byte_share
FROM {{ ref('curated_files') }}
GROUP BY language
ORDER BY bytes DESC, language
