"""The outcome of an ``output_not_empty`` check: empty outputs of non-empty inputs fail, with the reason."""

from xinst_assets.core.emptiness import (
    OutputOutcome,
    all_dropped_reason,
    label_counts,
    labels_text,
    none_accepted_reason,
)


def test_no_accepted_pair_is_explained_by_the_label_counts():
    counts = label_counts([2] * 32)
    assert counts == {1: 0, 2: 32, 3: 0}
    assert none_accepted_reason(counts, 3) == "0 pairs reached label 3: labels 1/2/3 = 0/32/0"
    assert labels_text({1: 4, 3: 1}) == "labels 1/2/3 = 4/0/1"


def test_every_dropped_row_is_explained_by_its_reasons_most_frequent_first():
    reason = all_dropped_reason(32, "texts", "became candidates",
                                {"candidate_copies_text": 12, "candidate_not_english": 20, "unused": 0})
    assert reason == "0 of 32 texts became candidates: candidate_not_english 20, candidate_copies_text 12"
    many = all_dropped_reason(10, "rows", "were usable", {f"r{i}": 1 for i in range(10)})
    assert many.endswith(", 2 other reasons")


def test_an_empty_output_fails_only_when_its_input_was_not_empty():
    empty = OutputOutcome(rows_in=32, rows_out=0, reason="0 pairs reached label 3: labels 1/2/3 = 0/32/0")
    assert not empty.passed
    assert empty.metadata() == {"rows_in": 32, "rows_out": 0,
                                "reason": "0 pairs reached label 3: labels 1/2/3 = 0/32/0"}
    assert OutputOutcome(rows_in=32, rows_out=1, reason="unused").passed
    idle = OutputOutcome(rows_in=0, rows_out=0, reason="unused")
    assert idle.passed and idle.metadata()["reason"] == "no input: nothing to do"
