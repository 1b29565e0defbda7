-- A sample of the files each rule dropped, with the value that failed it and the start of the file, so
-- that a person can check the rules are right. The content shown is redacted (no secret reaches a sample).
-- The sample is spread over the corpus by a hash of the path, not the first files in alphabetical order.
{{ config(materialized='view', columns={
    'drop_step': 'Funnel step that dropped the file (see curation_funnel)',
    'drop_reason': 'The rule or dedup stage that dropped it',
    'source': 'Source (a partition of raw_code_files) the file came from',
    'path': 'Path of the file in its source',
    'language': 'Language detected at ingestion',
    'drop_detail': 'The value that failed the rule, or the copy kept / the benchmark task matched',
    'excerpt': 'The start of the file, with secrets already redacted',
}) }}
SELECT
    d.drop_step,
    d.drop_reason,
    d.source,
    d.path,
    d.language,
    d.drop_detail,
    left(c.content, {{ var('sample_chars') }}) AS excerpt
FROM {{ ref('file_decisions') }} AS d
JOIN {{ ref('redacted_files') }} AS c ON c.source = d.source AND c.path = d.path
WHERE d.drop_reason IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY d.drop_reason ORDER BY hash(d.source, d.path)) <= {{ var('samples_per_rule') }}
ORDER BY d.drop_step, hash(d.source, d.path)
