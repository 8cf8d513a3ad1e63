"""Page sizes read from Parquet page headers, for every page kind pyarrow writes."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xinst_assets.core.parquet_pages import PageHeaderError, largest_page


def _chunk(path, column=0, group=0):
    chunk = pq.ParquetFile(path).metadata.row_group(group).column(column)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    return start, chunk.total_compressed_size, chunk.total_uncompressed_size


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("dictionary", [True, False])
def test_the_largest_page_is_found_from_the_headers_whatever_the_page_kind(tmp_path, version, dictionary):
    path = tmp_path / "t.parquet"
    texts = ["kidogo"] * 1000 + ["b" * 500_000] + ["kidogo"] * 1000
    pq.write_table(pa.table({"text": texts}), path, data_page_version=version, use_dictionary=dictionary,
                   compression="zstd")
    start, compressed, uncompressed = _chunk(path)
    with open(path, "rb") as handle:
        largest = largest_page(handle, start, compressed, uncompressed, limit=100_000)
    assert 500_000 <= largest < 600_000


def test_pages_of_ordinary_values_are_under_the_limit_and_a_small_chunk_needs_no_walk(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [f"hati {i} " * 50 for i in range(20_000)]}), path, data_page_size=64 << 10)
    start, compressed, uncompressed = _chunk(path)
    with open(path, "rb") as handle:
        walked = largest_page(handle, start, compressed, uncompressed, limit=2 << 20)
        assert walked < 2 << 20 and uncompressed > 2 << 20
        assert largest_page(handle, start, compressed, uncompressed, limit=uncompressed) == uncompressed


def test_a_damaged_page_header_is_an_error_not_a_wrong_size(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["x" * 1000] * 100}), path, use_dictionary=False)
    start, compressed, uncompressed = _chunk(path)
    data = bytearray(path.read_bytes())
    data[start: start + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    with open(path, "rb") as handle, pytest.raises(PageHeaderError):
        largest_page(handle, start, compressed, uncompressed, limit=10)
