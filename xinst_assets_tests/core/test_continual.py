"""Continual tuning: which recorded checkpoint a run starts from, and replay rows that are never new data."""

import pytest

from xinst_assets.core.continual import CheckpointRecord, resolve_start, select_replay

BASE = "models/base"


def _record(path, data, root=BASE):
    return CheckpointRecord(path=path, fingerprint=path[-1], data_fingerprint=data, started_from=None, root_model=root)


def _exists(path):
    return "gone" not in path


def test_auto_continues_an_instructalign_run_from_the_newest_checkpoint_trained_on_other_data():
    history = [_record("tuned/b", "align-data"), _record("tuned/a", "sft-data")]  # newest first
    first = resolve_start("auto", True, BASE, history[1:], "align-data", _exists)
    assert (first.model, first.how) == ("tuned/a", "previous")
    # The same run again (its own result is now the newest record) starts where it started: same fingerprint.
    again = resolve_start("auto", True, BASE, history, "align-data", _exists)
    assert (again.model, again.how) == ("tuned/a", "previous")
    assert "trained on this run's data" in again.skipped[0]
    # New data the next night continues from the newest checkpoint.
    later = resolve_start("auto", True, BASE, history, "new-align-data", _exists)
    assert later.model == "tuned/b"


def test_auto_starts_plain_tuning_from_the_base_model():
    start = resolve_start("auto", False, BASE, [_record("tuned/a", "sft-data")], "other", _exists)
    assert (start.model, start.how) == (BASE, "base")


def test_previous_passes_over_missing_folders_and_other_base_models_and_falls_back_to_the_base_model():
    history = [_record("tuned/gone", "x"), _record("tuned/other-root", "y", root="models/other")]
    start = resolve_start("previous", False, BASE, history, "z", _exists)
    assert (start.model, start.how) == (BASE, "base")
    assert [line.split(":")[1].strip() for line in start.skipped] == ["folder gone", "descends from models/other, not models/base"]


def test_a_given_checkpoint_is_used_as_it_is_and_an_empty_choice_is_an_error():
    assert resolve_start("org/instruct-model", True, BASE, [], "d", _exists).how == "given"
    with pytest.raises(ValueError, match="start_from is empty"):
        resolve_start(" ", True, BASE, [], "d", _exists)


def test_replay_rows_that_are_part_of_the_new_data_are_dropped():
    replay = [{"instruction": "Explain rain.", "response": "Rain falls from clouds."},
              {"instruction": "Name a colour.", "response": "Blue."},
              {"instruction": "Translate.", "response": "Habari  ya asubuhi."}]
    selected = select_replay(replay, new_pairs=[("Explain rain.", "Rain falls from clouds.")],
                             new_texts=["Habari ya asubuhi."])
    assert selected.rows == [{"instruction": "Name a colour.", "response": "Blue."}]
    assert selected.dropped_as_new_data == 2
