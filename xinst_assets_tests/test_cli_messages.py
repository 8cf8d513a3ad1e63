"""Configuration mistakes on the ``xinst`` command line: one line saying what is wrong and what to do, exit
status 2, no traceback, nothing created."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from xinst_assets import cli
from xinst_assets_tests import processes


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("XINST_HOME", "DAGSTER_HOME", "XINST_LANGUAGES_FILE", "XINST_NIGHTLY_CRON", "XINST_TIMEZONE",
                 "XINST_WAREHOUSE", "XINST_STORE", "XINST_LAKEHOUSE_CATALOG", "XINST_LAKEHOUSE_DATA"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def _fails_with_one_line(capsys, argv: list[str], *expected: str) -> str:
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    message = captured.err.strip()
    assert message.startswith("xinst: ") and "\n" not in message and "Traceback" not in captured.out + captured.err
    for text in expected:
        assert text in message, message
    return message


def test_selecting_one_asset_of_a_step_that_makes_two_names_the_other_and_the_command_to_run(home, capsys):
    _fails_with_one_line(capsys, ["--home", str(home), "materialize", "--languages", "sw", "--select",
                                  "language_filtered_text"],
                         "language_filtered_text is made in one step with filter_rejections",
                         "--select language_filtered_text,filter_rejections")
    assert not home.exists()  # nothing written: no warehouse, no Dagster instance


def test_an_unknown_asset_is_named_with_the_known_ones(home, capsys):
    _fails_with_one_line(capsys, ["--home", str(home), "materialize", "--languages", "sw", "--select",
                                  "seed_pairs,seed_pair"], "unknown asset 'seed_pair'", "seed_pairs")


@pytest.mark.parametrize("registry, expected", [
    ("languages:\n  xx_bad: {name: Bad, script: Latn}\n", "language code 'xx_bad' must be 2-3 lowercase letters"),
    ("languages:\n  am: {name: Amharic, script: Ethi, lid_threshold: high}\n", "lid_threshold of 'am' must be a number"),
    ("languages:\n  am: {name: [Amharic\n", "not valid YAML at line 3"),
    ("only: [sw, zz]\nlanguages: {}\n", "'only' names 'zz', not in the registry"),
])
def test_a_bad_registry_file_is_one_line_naming_the_file(home, capsys, monkeypatch, tmp_path, registry, expected):
    path = tmp_path / "languages.yaml"
    path.write_text(registry, encoding="utf-8")
    monkeypatch.setenv("XINST_LANGUAGES_FILE", str(path))
    message = _fails_with_one_line(capsys, ["--home", str(home), "materialize", "--languages", "sw"], expected)
    assert str(path) in message


def test_a_missing_registry_file_is_named(home, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XINST_LANGUAGES_FILE", str(tmp_path / "nope.yaml"))
    _fails_with_one_line(capsys, ["--home", str(home), "demo"], "Language registry file not found", "nope.yaml")


@pytest.mark.parametrize("variable, value, expected", [
    ("XINST_NIGHTLY_CRON", "every night", "XINST_NIGHTLY_CRON 'every night' is not a cron expression"),
    ("XINST_TIMEZONE", "Mars/Olympus", "XINST_TIMEZONE 'Mars/Olympus' is not an IANA time zone"),
])
def test_a_bad_schedule_setting_is_named_with_an_example(home, capsys, monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    _fails_with_one_line(capsys, ["--home", str(home), "ui"], expected)


@pytest.mark.parametrize("settings, expected", [
    ({"XINST_STORE": "lake"}, "XINST_STORE must be 'embedded' or 'lakehouse', got 'lake'"),
    ({"XINST_STORE": "lakehouse", "XINST_LAKEHOUSE_DATA": "/srv/lake"}, "environment variable XINST_LAKEHOUSE_CATALOG"),
    ({"XINST_STORE": "lakehouse", "XINST_LAKEHOUSE_CATALOG": "postgresql://x@db/lake"}, "XINST_LAKEHOUSE_DATA"),
])
def test_a_store_setting_that_cannot_work_is_named_before_any_run(home, capsys, monkeypatch, settings, expected):
    for variable, value in settings.items():
        monkeypatch.setenv(variable, value)
    _fails_with_one_line(capsys, ["--home", str(home), "materialize", "--languages", "sw"], expected)
    assert not home.exists()


def test_a_data_home_that_is_a_file_is_refused(tmp_path, home, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    _fails_with_one_line(capsys, ["--home", str(target), "materialize", "--languages", "sw"], "is a file, not a folder")


def test_an_invalid_dagster_yaml_is_named_with_what_to_do(home, capsys):
    (home / "dagster_home").mkdir(parents=True)
    (home / "dagster_home" / "dagster.yaml").write_text("run_storage:\n  module: nowhere\n", encoding="utf-8")
    _fails_with_one_line(capsys, ["--home", str(home), "materialize", "--languages", "sw", "--select", "seed_pairs"],
                         "dagster.yaml is not a valid Dagster instance configuration", "move it aside")


def test_a_worker_count_below_one_is_refused_by_the_argument_parser(home, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--home", str(home), "materialize", "--languages", "sw", "--workers", "0"])
    assert exit_info.value.code == 2 and "must be 1 or more" in capsys.readouterr().err


def test_the_installed_command_exits_2_with_the_message_and_no_traceback(home):
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    for name in ("XINST_HOME", "DAGSTER_HOME", "XINST_LANGUAGES_FILE"):
        env.pop(name, None)
    result = processes.run([str(Path(sys.executable).with_name("xinst")), "--home", str(home), "materialize",
                            "--languages", "sw", "--select", "language_filtered_text"], env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "xinst: language_filtered_text is made in one step with filter_rejections: select them together "
        "(--select language_filtered_text,filter_rejections)"]
