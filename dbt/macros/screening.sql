{#- Incremental screening (model screened_documents). A refresh screens again only the content ids of the
    language whose inputs changed: a copy that is new, re-ingested or gone, or a verdict that is new. Every row
    of such a content id is recomputed, because its copies are ranked together (which one survives). -#}

{#- Whether the existing table can be refreshed incrementally: it exists and records what its rows were
    computed from (tables written before these columns existed are screened again, once, language by language). -#}
{% macro screening_is_incremental() -%}
  {%- if not is_incremental() -%}
    {{ return(false) }}
  {%- endif -%}
  {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
  {{ return('shard_ingested_at' in columns and 'settings_key' in columns) }}
{%- endmacro %}

{#- Raw rows of the partitions' languages with the ingest that wrote them (a re-read shard has a new one).
    raw_shards is written with raw_documents by the same asset; it is not a source of its own because dagster-dbt
    maps each source to one asset. -#}
{% macro raw_rows_with_ingest() -%}
  {%- set raw_documents = source('xinst', 'raw_documents') -%}
  select r.*, r.rowid as raw_rowid, sh.ingested_at as shard_ingested_at
  from {{ raw_documents }} as r
  join {{ raw_documents.incorporate(path={'identifier': 'raw_shards'}) }} as sh
    on sh.lang = r.lang and sh.shard = r.shard
  where r.lang in ({{ partition_lang_list() }})
{%- endmacro %}

{#- Pre-hook: delete the screened rows of every content id whose inputs changed since they were screened. -#}
{% macro forget_changed_screenings() -%}
  {%- set langs = partition_lang_list() -%}
  {%- if screening_is_incremental() -%}
    delete from {{ this }} as t where t.lang in ({{ langs }}) and (t.lang, t.doc_id) in (
        -- a raw copy not screened as it is now: new, or from a shard ingested again
        select r.lang, r.doc_id from ({{ raw_rows_with_ingest() }}) as r
        where not exists (
            select 1 from {{ this }} as x
            where x.lang in ({{ langs }}) and x.lang = r.lang and x.doc_id = r.doc_id and x.shard = r.shard
              and x.position = r.position
              and x.shard_ingested_at = r.shard_ingested_at)
        union
        -- a screened copy whose raw row is gone (shard removed or ingested again)
        select x.lang, x.doc_id from {{ this }} as x
        where x.lang in ({{ langs }}) and not exists (
            select 1 from ({{ raw_rows_with_ingest() }}) as r
            where r.lang = x.lang and r.doc_id = x.doc_id and r.shard = x.shard and r.position = x.position
              and r.shard_ingested_at = x.shard_ingested_at)
        union
        -- a verdict computed again (other settings or LID model), or gone
        select x.lang, x.doc_id from {{ this }} as x
        left join {{ source('xinst', 'document_signals') }} as s
          on s.lang in ({{ langs }}) and s.lang = x.lang and s.doc_id = x.doc_id
        where x.lang in ({{ langs }}) and (s.doc_id is null or s.settings_key is distinct from x.settings_key
                                           or s.first_seen_at is distinct from x.first_seen_at)
    )
  {%- elif is_incremental() -%}
    -- a table from before these columns: add them, and screen these languages again in full
    alter table {{ this }} add column if not exists shard_ingested_at timestamp;
    alter table {{ this }} add column if not exists settings_key varchar;
    delete from {{ this }} where lang in ({{ langs }})
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}
