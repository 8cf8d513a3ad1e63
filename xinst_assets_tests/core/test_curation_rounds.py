"""What each self-curation round did: texts graded, accepted (after refinement), rejected, rewrites, generator."""

from xinst_assets.core.curation import RoundSummary, round_summaries


def _row(round_no, doc, label, refined=False, generator="shared"):
    return {"round": round_no, "doc_id": doc, "label": label, "refined": refined, "generator": generator}


def test_a_text_counts_as_accepted_in_a_round_when_its_best_row_of_that_round_reaches_the_label():
    history = [
        _row(1, "a", 3), _row(1, "b", 2), _row(1, "b", 3, refined=True), _row(1, "c", 1), _row(1, "d", 2),
        _row(2, "c", 3, generator="round1"), _row(2, "d", 1, generator="round1"),
    ]
    assert round_summaries(history, accept_label=3) == [
        RoundSummary(round=1, graded=4, accepted=2, rejected=2, refined=1, generator="shared"),
        RoundSummary(round=2, graded=2, accepted=1, rejected=1, refined=0, generator="round1"),
    ]
    assert round_summaries(history, accept_label=2)[0].accepted == 3
