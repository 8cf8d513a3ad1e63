"""Shard discovery: resolved paths, no link out of the source roots, loops walked once, each real file listed
once, every skip reported, and one clear line for a source that cannot be used."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from xinst_assets.core import discovery as d
from xinst_assets.core.discovery import SourceError, discover_shards
from xinst_assets_tests.core.unprivileged import run_unprivileged, shared_folder


def _touch(path: Path, text: str = '{"text": "Habari"}\n') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _names(found: d.Discovery) -> list[str]:
    return [Path(s.path).name for s in found.shards]


def _skips(found: d.Discovery) -> list[tuple[str, str]]:
    return [(Path(s.path).name, s.reason) for s in found.skipped]


def test_symlink_loops_end_the_walk_with_each_file_listed_once_and_the_loops_reported(tmp_path):
    lang = tmp_path / "raw" / "sw"
    _touch(lang / "a.jsonl")
    _touch(lang / "deep" / "b.jsonl")
    (lang / "a").symlink_to(".")
    (lang / "b").symlink_to(".")
    (lang / "deep" / "up").symlink_to("..")
    found = discover_shards([str(tmp_path / "raw")], "sw")
    assert _names(found) == ["a.jsonl", "b.jsonl"]
    assert [s.path for s in found.shards] == [str(lang.resolve() / "a.jsonl"), str(lang.resolve() / "deep" / "b.jsonl")]
    assert sorted(_skips(found)) == [("a", d.LINK_LOOP), ("b", d.LINK_LOOP), ("up", d.LINK_LOOP)]
    assert all(s in found.warnings for s in found.skipped)


def test_loops_under_a_recursive_glob_end_too(tmp_path):
    lang = tmp_path / "raw" / "sw"
    _touch(lang / "x" / "a.jsonl")
    (lang / "x" / "again").symlink_to("../x")
    (lang / "self").symlink_to(".")
    found = discover_shards([str(tmp_path / "raw" / "{lang}" / "**" / "*.jsonl")], "sw")
    assert _names(found) == ["a.jsonl"]
    assert {reason for _, reason in _skips(found)} == {d.LINK_LOOP}


def test_a_link_to_a_file_outside_the_roots_is_skipped_not_read(tmp_path):
    secret = _touch(tmp_path / "elsewhere" / "secret.jsonl", '{"text": "siri ya mfumo"}\n')
    lang = tmp_path / "raw" / "sw"
    _touch(lang / "a.jsonl")
    (lang / "leak.jsonl").symlink_to(secret)
    (lang / "etc").symlink_to(tmp_path / "elsewhere")
    found = discover_shards([str(tmp_path / "raw")], "sw")
    assert _names(found) == ["a.jsonl"]
    assert sorted(_skips(found)) == [("etc", d.LINK_OUTSIDE_ROOTS), ("leak.jsonl", d.LINK_OUTSIDE_ROOTS)]
    assert str(secret.resolve()) in found.skipped[1].detail


def test_links_inside_the_roots_are_followed_and_each_real_file_is_listed_once(tmp_path):
    raw = tmp_path / "raw"
    real = _touch(raw / "sw" / "real.jsonl")
    _touch(raw / "shared" / "common.jsonl")
    (raw / "sw" / "alias.jsonl").symlink_to(real)
    (raw / "sw" / "shared").symlink_to(raw / "shared")
    os.link(real, raw / "sw" / "hardlink.jsonl")
    found = discover_shards([str(raw)], "sw")
    # real.jsonl and hardlink.jsonl are one file (one inode): listed once, under the first of its paths
    assert sorted(_names(found)) == ["common.jsonl", "hardlink.jsonl"]
    assert (raw / "shared" / "common.jsonl").resolve().as_posix() in {s.path for s in found.shards}
    assert d.SAME_FILE in {reason for _, reason in _skips(found)}
    assert found.warnings == []  # aliases are not worth a warning


def test_a_link_from_one_configured_root_into_another_is_inside_the_roots(tmp_path):
    extra = _touch(tmp_path / "extra" / "sw" / "x.jsonl")
    _touch(tmp_path / "raw" / "sw" / "a.jsonl")
    (tmp_path / "raw" / "sw" / "x.jsonl").symlink_to(extra)
    found = discover_shards([str(tmp_path / "raw"), str(tmp_path / "extra")], "sw")
    assert sorted(_names(found)) == ["a.jsonl", "x.jsonl"] and found.warnings == []


def test_broken_and_self_links_fifos_and_folders_named_like_shards_are_reported(tmp_path):
    lang = tmp_path / "raw" / "sw"
    _touch(lang / "a.jsonl")
    (lang / "gone.jsonl").symlink_to(lang / "missing.jsonl")
    (lang / "me.jsonl").symlink_to(lang / "me.jsonl")
    os.mkfifo(lang / "pipe.jsonl")
    _touch(lang / "folder.jsonl" / "inner.jsonl")
    found = discover_shards([str(tmp_path / "raw")], "sw")
    assert _names(found) == ["a.jsonl", "inner.jsonl"]
    assert sorted(_skips(found)) == [("folder.jsonl", d.FOLDER_NAMED_LIKE_A_SHARD), ("gone.jsonl", d.BROKEN_LINK),
                                     ("me.jsonl", d.LINK_LOOP), ("pipe.jsonl", d.NOT_A_REGULAR_FILE)]


def test_hidden_files_and_other_suffixes_are_not_shards(tmp_path):
    lang = tmp_path / "raw" / "sw"
    _touch(lang / "a.jsonl")
    _touch(lang / ".partial.jsonl")
    _touch(lang / ".cache" / "b.jsonl")
    _touch(lang / "notes.txt")
    assert _names(discover_shards([str(tmp_path / "raw")], "sw")) == ["a.jsonl"]


def test_globs_with_lang_match_only_that_language(tmp_path):
    _touch(tmp_path / "flat" / "dump_sw.jsonl.gz")
    _touch(tmp_path / "flat" / "dump_fi.jsonl.gz")
    _touch(tmp_path / "fw" / "sw_Latn" / "part-0.parquet")
    found = discover_shards([str(tmp_path / "flat" / "dump_{lang}.jsonl.gz"), str(tmp_path / "fw" / "{lang}_*" / "*.parquet")],
                            "sw")
    assert _names(found) == ["dump_sw.jsonl.gz", "part-0.parquet"]


def test_a_folder_that_cannot_be_listed_is_reported_with_what_to_do(tmp_path):
    root = shared_folder()
    _touch(root / "sw" / "a.jsonl")
    _touch(root / "sw" / "closed" / "b.jsonl")
    os.chmod(root / "sw" / "closed", 0o700)
    found = run_unprivileged(lambda: discover_shards([str(root)], "sw"))
    assert _names(found) == ["a.jsonl"]
    assert _skips(found) == [("closed", d.UNREADABLE_FOLDER)] and "permission" in found.skipped[0].detail


def test_a_language_without_a_folder_has_no_shards(tmp_path):
    (tmp_path / "raw").mkdir()
    assert discover_shards([str(tmp_path / "raw")], "sw") == d.Discovery()


@pytest.mark.parametrize("pattern, message", [
    ("missing", "raw source folder '{p}' does not exist: create it, mount it, or set XINST_RAW_SOURCES"),
    ("missing/{{lang}}/*.jsonl", "its folder '{root}' does not exist or is not a folder"),
    ("file.jsonl", "is a file, not a folder or a glob with {{lang}}"),
])
def test_a_source_that_cannot_be_used_is_one_line_that_says_what_to_do(tmp_path, pattern, message):
    _touch(tmp_path / "file.jsonl")
    full = str(tmp_path / pattern.replace("{{", "{").replace("}}", "}"))
    with pytest.raises(SourceError) as error:
        discover_shards([full], "sw")
    text = str(error.value)
    assert "\n" not in text
    assert message.format(p=full, root=str(tmp_path / "missing")).replace("{{", "{").replace("}}", "}") in text


def test_no_source_at_all_is_a_clear_error():
    with pytest.raises(SourceError, match="no raw source is configured"):
        discover_shards([], "sw")


def test_a_device_file_named_like_a_shard_is_skipped(tmp_path):
    lang = tmp_path / "raw" / "sw"
    _touch(lang / "a.jsonl")
    try:
        os.mknod(lang / "zero.jsonl", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero: endless bytes
    except PermissionError:
        pytest.skip("creating a device node needs root")
    found = discover_shards([str(tmp_path / "raw")], "sw")
    assert _names(found) == ["a.jsonl"] and _skips(found) == [("zero.jsonl", d.NOT_A_REGULAR_FILE)]
    assert "device" in found.skipped[0].detail


def _keys(found: d.Discovery) -> list[str]:
    return sorted(s.key for s in found.shards)


def test_shards_are_keyed_by_their_place_in_the_source_wherever_it_is_mounted(tmp_path):
    _touch(tmp_path / "mount-a" / "oscar" / "sw" / "2024" / "part-0.jsonl")
    _touch(tmp_path / "mount-a" / "oscar" / "sw" / "part-1.jsonl.gz")
    first = discover_shards([str(tmp_path / "mount-a" / "oscar")], "sw")
    assert _keys(first) == ["oscar/sw/2024/part-0.jsonl", "oscar/sw/part-1.jsonl.gz"]
    (tmp_path / "mount-b").mkdir()
    (tmp_path / "mount-a" / "oscar").rename(tmp_path / "mount-b" / "oscar")
    again = discover_shards([str(tmp_path / "mount-b" / "oscar" / "{lang}" / "**" / "*")], "sw")
    assert _keys(again) == _keys(first)  # the same keys from a glob over the moved folder
    assert all(s.path.startswith(str(tmp_path / "mount-b")) for s in again.shards)


def test_roots_with_the_same_name_get_distinct_keys_and_one_folder_under_two_patterns_one_name(tmp_path):
    _touch(tmp_path / "a" / "data" / "sw" / "x.jsonl")
    _touch(tmp_path / "b" / "data" / "sw" / "x.jsonl")
    _touch(tmp_path / "b" / "data" / "sw" / "y.parquet", "")
    found = discover_shards([str(tmp_path / "a" / "data"), str(tmp_path / "b" / "data")], "sw")
    assert _keys(found) == ["data#1/sw/x.jsonl", "data#2/sw/x.jsonl", "data#2/sw/y.parquet"]
    two_globs = discover_shards([str(tmp_path / "b" / "data" / "{lang}" / "*.jsonl"),
                                 str(tmp_path / "b" / "data" / "{lang}" / "*.parquet")], "sw")
    assert _keys(two_globs) == ["data/sw/x.jsonl", "data/sw/y.parquet"]


def test_a_file_reached_through_a_link_is_keyed_by_its_real_place(tmp_path):
    real = _touch(tmp_path / "src" / "sw" / "real.jsonl")
    (tmp_path / "src" / "sw" / "alias.jsonl").symlink_to(real)
    found = discover_shards([str(tmp_path / "src")], "sw")
    assert _keys(found) == ["src/sw/real.jsonl"]
