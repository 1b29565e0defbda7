-- One verdict per file: every licence and quality rule it fails, the first of them with the value that
-- failed it (the reason it is dropped; NULL when it is kept), and a quality score (0-1).
-- The order of the rules below is the order of the filter funnel shown in the UI.
-- The quality score rewards some comments (not mostly comments), moderate line lengths, a high share of
-- letters and a size between 20 and 1,000 lines; it breaks ties between near-duplicates.
{{ config(materialized='table', tests={
    'not_null': ['path', 'sha256', 'quality_score', 'license_rank'],
    'accepted_values': {'license_rank': [0, 1, 2]},
}) }}
WITH checked AS (
    SELECT
        *,
        [
            {'rule': 'license_unknown',
             'failed': license IS NULL AND NOT {{ var('allow_unlicensed') }},
             'detail': 'no licence detected'},
            {'rule': 'license_denied',
             'failed': list_contains({{ var('license_denylist') }}, license),
             'detail': license},
            {'rule': 'license_not_allowed',
             'failed': license IS NOT NULL AND len({{ var('license_allowlist') }}) > 0
                       AND NOT list_contains({{ var('license_allowlist') }}, license),
             'detail': license},
            {'rule': 'generated_path',
             'failed': has_generated_path,
             'detail': path},
            {'rule': 'generated_marker',
             'failed': has_generated_marker,
             'detail': 'generated-code marker in the first {{ var("generated_marker_lines") }} lines'},
            {'rule': 'xml',
             'failed': is_xml,
             'detail': '<?xml version= at the top'},
            {'rule': 'html_little_text',
             'failed': html_visible_chars < {{ var('html_min_visible_chars') }}
                       OR html_visible_chars / greatest(n_chars, 1) < {{ var('html_min_visible_fraction') }},
             'detail': format('{} visible characters of {}', html_visible_chars, n_chars)},
            {'rule': 'data_file_size',
             'failed': n_chars < {{ var_by_language('data_min_chars') }}
                       OR n_chars > {{ var_by_language('data_max_chars') }},
             'detail': format('{} characters', n_chars)},
            {'rule': 'data_file_lines',
             'failed': line_count > {{ var_by_language('data_max_lines') }},
             'detail': format('{} lines', line_count)},
            {'rule': 'too_few_lines',
             'failed': code_lines < {{ var_by_language('min_code_lines') }},
             'detail': format('{} non-blank lines', code_lines)},
            {'rule': 'too_many_lines',
             'failed': line_count > {{ var('max_lines') }},
             'detail': format('{} lines', line_count)},
            {'rule': 'long_line',
             'failed': max_line_length > {{ var_by_language('max_line_length') }},
             'detail': format('longest line {} characters', max_line_length)},
            {'rule': 'long_mean_line',
             'failed': mean_line_length > {{ var('max_mean_line_length') }},
             'detail': format('mean line {:.0f} characters', mean_line_length)},
            {'rule': 'low_alnum_fraction',
             'failed': alnum_fraction < {{ var('min_alnum_fraction') }},
             'detail': format('{:.2f} alphanumeric', alnum_fraction)},
            {'rule': 'low_alpha_fraction',
             'failed': alpha_fraction < {{ var_by_language('min_alpha_fraction') }},
             'detail': format('{:.2f} alphabetic', alpha_fraction)},
            {'rule': 'encoded_data',
             'failed': longest_encoded_span > {{ var('max_encoded_span') }}
                       OR encoded_fraction > {{ var('max_encoded_fraction') }},
             'detail': format('longest encoded span {}, {:.0f}% of the file', longest_encoded_span,
                              100 * encoded_fraction)},
            {'rule': 'too_few_comments',
             'failed': line_count >= {{ var('comment_ratio_min_lines') }}
                       AND comment_ratio < {{ var_by_language('min_comment_ratio') }},
             'detail': format('comment ratio {:.3f} over {} lines', comment_ratio, line_count)},
            {'rule': 'too_many_comments',
             'failed': comment_ratio > {{ var('max_comment_ratio') }},
             'detail': format('comment ratio {:.2f}', comment_ratio)},
        ] AS checks
    FROM {{ ref('file_features') }}
),
judged AS (
    SELECT
        * EXCLUDE (checks),
        list_filter(
            list_transform(checks, lambda c, step: struct_insert(c, step := step)),
            lambda c: coalesce(c.failed, false)
        ) AS failed
    FROM checked
)
SELECT
    * EXCLUDE (failed),
    list_transform(failed, lambda c: c.rule) AS failed_rules,
    failed[1].rule AS drop_reason,
    failed[1].detail AS drop_detail,
    failed[1].step AS drop_step,
    CASE
        WHEN list_contains({{ var('license_allowlist') }}, license) THEN 2
        WHEN license IS NULL THEN 1
        ELSE 0
    END AS license_rank,
    round((
        -- some comments, not mostly comments
        CASE WHEN comment_ratio <= 0.5 THEN least(comment_ratio / 0.1, 1.0)
             ELSE greatest(1.0 - (comment_ratio - 0.5) / 0.3, 0.0) END
        -- readable line lengths
        + CASE WHEN mean_line_length BETWEEN 15 AND 80 THEN 1.0
               ELSE greatest(1.0 - abs(mean_line_length - 47.5) / 100, 0.0) END
        -- mostly words, not symbols or numbers
        + least(alpha_fraction / 0.6, 1.0)
        -- substantial but not huge
        + CASE WHEN code_lines BETWEEN 20 AND 1000 THEN 1.0
               WHEN code_lines < 20 THEN code_lines / 20
               ELSE greatest(1.0 - (code_lines - 1000) / 20000, 0.0) END
    ) / 4, 4) AS quality_score
FROM judged
