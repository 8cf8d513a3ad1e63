{{ config(pre_hook="{{ forget_changed_screenings() }}", tags=["filtering"]) }}

-- Each raw document of the partition with its language-ID and quality decision, and exact deduplication by
-- content id: the first copy (earliest first seen, then shard order) survives and carries the copy count.
-- Incremental by content: the pre-hook listed every content id whose copies or verdict changed (temp table
-- screening_todo) and removed their rows, and a refresh computes those content ids again (all their copies),
-- so it writes what changed, not the whole language. Texts are fetched last, by row id, for the rows computed
-- only: a refresh does not read the language's texts (DuckDB reads rows by row id without scanning the column).
with raw as (
    select lang, doc_id, url, timestamp, source, shard, position, source_id, source_lang, shard_ingested_at,
           raw_rowid
    from ({{ raw_rows_with_ingest() }})
),

joined as (
    select
        r.lang, r.doc_id, r.raw_rowid, r.url, r.timestamp, r.source, r.shard, r.position, r.source_id,
        r.source_lang, r.shard_ingested_at,
        s.lid_label, s.lid_score, s.lid_runner_up, s.lid_runner_up_score, s.reject_reason, s.first_seen_at,
        s.settings_key, s.signals_version, s.lid_second_label, s.lid_second_score, s.lid_decided_by,
        s.lid_english_share
    from raw as r
    join {{ source('xinst', 'document_signals') }} as s
      on s.lang in ({{ partition_lang_list() }}) and s.lang = r.lang and s.doc_id = r.doc_id
    {% if screening_is_incremental() %}
    where (r.lang, r.doc_id) in (select lang, doc_id from screening_todo)
    {% endif %}
),

texts as (
    select rowid as raw_rowid, text from {{ source('xinst', 'raw_documents') }}
    where rowid in (select raw_rowid from joined)
),

ranked as (
    select
        *,
        row_number() over (partition by lang, doc_id order by first_seen_at, shard, position) as copy_rank,
        count(*) over (partition by lang, doc_id) as exact_copies
    from joined
)

select
    r.lang, r.doc_id, t.text, r.url, r.timestamp, r.source, r.shard, r.position,
    lid_label, lid_score, lid_runner_up, lid_runner_up_score, first_seen_at, exact_copies,
    case
        when reject_reason is not null then reject_reason
        when copy_rank > 1 then 'dedup_exact_duplicate'
    end as reject_reason,
    r.shard_ingested_at,
    r.settings_key,
    r.signals_version,
    r.source_id,
    r.source_lang,
    r.lid_second_label,
    r.lid_second_score,
    r.lid_decided_by,
    r.lid_english_share
from ranked as r
join texts as t on t.raw_rowid = r.raw_rowid
