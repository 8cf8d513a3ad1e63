{{ config(pre_hook="{{ replace_partition_hook() }}", tags=["filtering"]) }}

-- Each raw document of the partition with its language-ID and quality decision, and exact deduplication by
-- content id: the first copy (earliest first seen, then shard order) survives and carries the copy count.
with joined as (
    select
        r.lang, r.doc_id, r.text, r.url, r.timestamp, r.source, r.shard, r.position,
        s.lid_label, s.lid_score, s.lid_runner_up, s.lid_runner_up_score, s.reject_reason, s.first_seen_at
    from {{ source('xinst', 'raw_documents') }} as r
    join {{ source('xinst', 'document_signals') }} as s
      on s.lang = r.lang and s.doc_id = r.doc_id
    where r.lang = '{{ partition_lang() }}'
),

ranked as (
    select
        *,
        row_number() over (partition by doc_id order by first_seen_at, shard, position) as copy_rank,
        count(*) over (partition by doc_id) as exact_copies
    from joined
)

select
    lang, doc_id, text, url, timestamp, source, shard, position,
    lid_label, lid_score, lid_runner_up, lid_runner_up_score, first_seen_at, exact_copies,
    case
        when reject_reason is not null then reject_reason
        when copy_rank > 1 then 'dedup_exact_duplicate'
    end as reject_reason
from ranked
