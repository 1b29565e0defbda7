-- Per-file features the quality rules read: line statistics, character mix, generated-code markers.
-- The content itself stays in the raw store; later models carry only the key (sha256).
{{ config(materialized='table', tests={'not_null': ['n_chars', 'max_line_length']}) }}
WITH lines AS (
    SELECT
        *,
        string_split(content, chr(10)) AS line_list
    FROM {{ ref('stg_raw_files') }}
)
SELECT
    source,
    repo,
    path,
    language,
    license,
    stars,
    forks,
    sha256,
    size_bytes,
    line_count,
    length(content) AS n_chars,
    list_max(list_transform(line_list, lambda l: length(l))) AS max_line_length,
    length(content) / greatest(line_count, 1) AS mean_line_length,
    length(regexp_replace(content, '[^a-zA-Z0-9]', '', 'g')) / greatest(length(content), 1) AS alnum_fraction,
    length(regexp_replace(content, '[^a-zA-Z]', '', 'g')) / greatest(length(content), 1) AS alpha_fraction,
    regexp_matches(
        array_to_string(list_slice(line_list, 1, 5), chr(10)), {{ var('generated_markers_regex') }}, 'i'
    ) AS has_generated_marker,
    regexp_matches(path, {{ var('generated_path_regex') }}, 'i') AS has_generated_path,
    starts_with(ltrim(left(content, 100)), '<?xml version=') AS is_xml
FROM lines
