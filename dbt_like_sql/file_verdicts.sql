-- One verdict per file: NULL when it is kept, else the first quality or licence rule that drops it.
-- The order of the CASE is the order of the filter funnel shown in the UI.
{{ config(materialized='table', tests={'not_null': ['path', 'sha256']}) }}
SELECT
    *,
    CASE
        WHEN license IS NULL AND NOT {{ var('allow_unlicensed') }} THEN 'license_unknown'
        WHEN list_contains({{ var('license_denylist') }}, license) THEN 'license_denied'
        WHEN has_generated_path THEN 'generated_path'
        WHEN has_generated_marker THEN 'generated_marker'
        WHEN is_xml THEN 'xml'
        WHEN line_count < {{ var('min_lines') }} THEN 'too_few_lines'
        WHEN line_count > {{ var('max_lines') }} THEN 'too_many_lines'
        WHEN max_line_length > {{ var('max_line_length') }} THEN 'long_line'
        WHEN mean_line_length > {{ var('max_mean_line_length') }} THEN 'long_mean_line'
        WHEN alnum_fraction < {{ var('min_alnum_fraction') }} THEN 'low_alnum_fraction'
        WHEN alpha_fraction < {{ var('min_alpha_fraction') }} THEN 'low_alpha_fraction'
    END AS drop_reason
FROM {{ ref('file_features') }}
