{{ config(pre_hook="{{ replace_partition_hook() }}", tags=["marts"]) }}

-- Per-language filtering statistics (a row for each language built, documents or not): how many documents came in, were kept, and why the others were dropped.
with kept as (
    select lang, count(*) as kept, avg(chars) as kept_mean_chars, sum(cluster_size) as kept_cluster_total
    from {{ source('xinst', 'filtered_documents') }}
    where lang in ({{ partition_lang_list() }})
    group by lang
),

rejected as (
    select lang, split_part(reason, ':', 1) as reason_family, count(*) as n
    from {{ source('xinst', 'filter_rejections') }}
    where lang in ({{ partition_lang_list() }})
    group by all
),

rejected_wide as (
    select
        lang,
        sum(n) as rejected,
        sum(n) filter (where reason_family like 'lid_%') as rejected_lid,
        sum(n) filter (where reason_family like 'quality_%') as rejected_quality,
        sum(n) filter (where reason_family = 'dedup_exact_duplicate') as rejected_exact_duplicate,
        sum(n) filter (where reason_family = 'dedup_near_duplicate') as rejected_near_duplicate
    from rejected
    group by lang
)

select
    l.lang,
    coalesce(k.kept, 0) as kept,
    coalesce(r.rejected, 0) as rejected,
    coalesce(k.kept, 0) + coalesce(r.rejected, 0) as documents_in,
    coalesce(r.rejected_lid, 0) as rejected_lid,
    coalesce(r.rejected_quality, 0) as rejected_quality,
    coalesce(r.rejected_exact_duplicate, 0) as rejected_exact_duplicate,
    coalesce(r.rejected_near_duplicate, 0) as rejected_near_duplicate,
    round(coalesce(k.kept, 0) / nullif(coalesce(k.kept, 0) + coalesce(r.rejected, 0), 0), 4) as kept_fraction,
    k.kept_mean_chars
from (select unnest([{{ partition_lang_list() }}]) as lang) as l
left join kept as k on k.lang = l.lang
left join rejected_wide as r on r.lang = l.lang
