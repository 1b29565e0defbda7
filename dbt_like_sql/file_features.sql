-- Per-file features the quality rules read: size and line statistics, character mix, comments (with the
-- comment syntax of the file's language), encoded-data spans, markup and generated-code markers.
-- The content stays in the raw store; from here on models carry the key (source, path) and the hash.
{{ config(materialized='table', tests={'not_null': ['n_chars', 'max_line_length', 'comment_ratio']}) }}
WITH files AS (
    SELECT
        *,
        string_split(content, chr(10)) AS lines,
        length(content) AS n_chars,
        ascii_char_counts(content) AS char_counts
    FROM {{ ref('redacted_files') }}
),
measured AS (
    SELECT
        source, repo, path, language, license, stars, forks, sha256, raw_sha256, redactions,
        n_chars,
        strlen(content) AS size_bytes,
        len(lines) - CASE WHEN ends_with(content, chr(10)) THEN 1 ELSE 0 END AS line_count,
        len(list_filter(lines, lambda l: trim(l) <> '')) AS code_lines,
        coalesce(list_max(list_transform(lines, lambda l: length(l))), 0) AS max_line_length,
        -- ASCII letters and digits, counted in numpy over the whole batch (curate/functions.py).
        char_counts.alnum AS alnum_chars,
        char_counts.alpha AS alpha_chars,
        coalesce(list_sum(list_transform(
            regexp_extract_all(content, {{ var_by_language('comment_regex') }}), lambda c: length(c)
        )), 0) AS comment_chars,
        list_transform(regexp_extract_all(content, {{ var('encoded_data_regex') }}), lambda m: length(m))
            AS encoded_spans,
        regexp_matches(
            array_to_string(list_slice(lines, 1, {{ var('generated_marker_lines') }}), chr(10)),
            {{ var('generated_markers_regex') }}, 'i'
        ) AS has_generated_marker,
        regexp_matches(path, {{ var('generated_path_regex') }}, 'i') AS has_generated_path,
        contains(left(content, {{ var('xml_marker_chars') }}), '<?xml version=') AS is_xml,
        -- HTML: the text a reader sees, without scripts, styles, comments and tags.
        CASE WHEN language = 'html' THEN length(trim(regexp_replace(regexp_replace(regexp_replace(content,
            '<(script|style)[\s\S]*?</(script|style)>|<!--[\s\S]*?-->', ' ', 'gi'),
            '<[^>]*>', ' ', 'g'), '\s+', ' ', 'g'))) END AS html_visible_chars
    FROM files
)
SELECT
    * EXCLUDE (alnum_chars, alpha_chars, comment_chars, encoded_spans),
    n_chars / greatest(line_count, 1) AS mean_line_length,
    alnum_chars / greatest(n_chars, 1) AS alnum_fraction,
    alpha_chars / greatest(n_chars, 1) AS alpha_fraction,
    comment_chars / greatest(n_chars, 1) AS comment_ratio,
    coalesce(list_max(encoded_spans), 0) AS longest_encoded_span,
    coalesce(list_sum(encoded_spans), 0) / greatest(n_chars, 1) AS encoded_fraction
FROM measured
