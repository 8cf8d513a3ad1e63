"""The largest page of a Parquet column chunk, read from the page headers alone.

Arrow decodes a Parquet page whole, so a page of one 200 MB value costs a few times 200 MB of memory however
small the batches asked for. A column chunk's metadata gives its total size but not its pages', so before a
row group is read the headers of its pages are walked (each header is a small Thrift struct in front of its
page; the page itself is skipped with a seek). A chunk whose whole uncompressed size is under the limit needs
no walk: none of its pages can be larger.
"""

from __future__ import annotations

from typing import BinaryIO

MAX_HEADER_BYTES = 1 << 20  # a page header (statistics included) longer than this is treated as hostile

# Thrift compact protocol type ids
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)


class PageHeaderError(ValueError):
    """A page header that cannot be parsed (a damaged or hostile file)."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise EOFError
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise PageHeaderError("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def skip(self, kind: int, depth: int = 0) -> None:
        if depth > 32:
            raise PageHeaderError("page header nested too deeply")
        if kind in (_BOOL_TRUE, _BOOL_FALSE):
            return
        if kind == _BYTE:
            self.pos += 1
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.pos += 8
        elif kind == _BINARY:
            length = self.varint()  # read before pos is: the varint moves it
            self.pos += length
        elif kind in (_LIST, _SET):
            head = self.byte()
            size, element = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            for _ in range(size):
                self.skip_element(element, depth + 1)
        elif kind == _MAP:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.skip_element(types >> 4, depth + 1)
                    self.skip_element(types & 0x0F, depth + 1)
        elif kind == _STRUCT:
            self.struct(depth + 1)
        else:
            raise PageHeaderError(f"unknown Thrift type {kind}")
        if self.pos > len(self.data):
            raise EOFError

    def skip_element(self, kind: int, depth: int) -> None:
        if kind in (_BOOL_TRUE, _BOOL_FALSE):
            self.pos += 1  # a boolean in a list or map is a byte
        else:
            self.skip(kind, depth)

    def struct(self, depth: int = 0, wanted: tuple[int, ...] = ()) -> dict[int, int]:
        """Walk a struct; return the i32 fields whose ids are ``wanted``."""
        found: dict[int, int] = {}
        last = 0
        while True:
            head = self.byte()
            if head == 0:
                return found
            delta, kind = head >> 4, head & 0x0F
            field = last + delta if delta else self.zigzag()
            last = field
            if field in wanted and kind == _I32:
                found[field] = self.zigzag()
            else:
                self.skip(kind, depth)


def _header(handle: BinaryIO, offset: int) -> tuple[int, int, int]:
    """(header length, uncompressed page size, compressed page size) of the page at ``offset``."""
    size = 256
    while True:
        handle.seek(offset)
        data = handle.read(size)
        reader = _Reader(data)
        try:
            fields = reader.struct(wanted=(2, 3))
        except EOFError:
            if len(data) < size or size >= MAX_HEADER_BYTES:
                raise PageHeaderError(f"page header at byte {offset:,} is cut off or longer than "
                                      f"{MAX_HEADER_BYTES:,} bytes") from None
            size *= 4
            continue
        if 2 not in fields or 3 not in fields or fields[2] < 0 or fields[3] < 0:
            raise PageHeaderError(f"page header at byte {offset:,} has no page sizes")
        return reader.pos, fields[2], fields[3]


def largest_page(handle: BinaryIO, start: int, compressed_size: int, uncompressed_size: int, limit: int) -> int:
    """The largest uncompressed page of the column chunk at ``start`` (its pages span ``compressed_size``
    bytes), or ``uncompressed_size`` itself when that is within ``limit`` (no page can be larger). The walk
    stops at the first page over ``limit``. Raises :class:`PageHeaderError` for a header that cannot be read."""
    if uncompressed_size <= limit:
        return uncompressed_size
    largest, offset, end = 0, start, start + compressed_size
    while offset < end:
        length, uncompressed, compressed = _header(handle, offset)
        largest = max(largest, uncompressed)
        if largest > limit:
            break
        offset += length + compressed
    return largest
