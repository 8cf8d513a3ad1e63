{#- The language partition this run writes. Only ISO 639 codes pass, so it is safe to inline in SQL. -#}
{% macro partition_lang() -%}
  {%- set lang = var('lang') -%}
  {%- if execute and not modules.re.match('^[a-z]{2,3}$', lang) -%}
    {{ exceptions.raise_compiler_error("dbt var 'lang' must be an ISO 639 code, got '" ~ lang ~ "'") }}
  {%- endif -%}
  {{ return(lang) }}
{%- endmacro %}

{#- Replace this language's rows: delete them before the incremental insert (idempotent partitions). -#}
{% macro replace_partition_hook() -%}
  {%- if is_incremental() -%}
    DELETE FROM {{ this }} WHERE lang = '{{ partition_lang() }}'
  {%- else -%}
    SELECT 1
  {%- endif -%}
{%- endmacro %}
