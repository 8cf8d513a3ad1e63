import pytest

from xinst_assets.core.dedup_eval import LabelledDocument, load_near_duplicates, score_near_duplicates


def _group(name: str, copies: int = 2, negatives: int = 1) -> list[LabelledDocument]:
    roles = ["original"] + ["near_copy"] * copies + ["hard_negative"] * negatives
    return [LabelledDocument(f"{name}-{k}", "fi", name, role, f"text {name} {k}") for k, role in enumerate(roles)]


def test_a_perfect_clustering_scores_full_recall_and_no_errors():
    docs = _group("g1") + _group("g2", copies=3)
    clusters = {d.id: d.group if d.role != "hard_negative" else d.id for d in docs}
    score = score_near_duplicates(docs, clusters)
    assert (score.groups, score.near_copies, score.hard_negatives) == (2, 5, 2)
    assert score.recall == 1.0 and score.negatives_merged == score.groups_split == score.groups_merged == 0


def test_a_copy_apart_from_its_original_splits_its_group_and_lowers_recall():
    docs = _group("g1", copies=4)
    clusters = {d.id: "g1" for d in docs if d.role != "hard_negative"} | {"g1-4": "copy alone", "g1-5": "neg"}
    score = score_near_duplicates(docs, clusters)
    assert score.recall == 0.75 and score.groups_split == 1 and score.negatives_merged == 0


def test_a_hard_negative_sharing_any_cluster_counts_as_merged_and_two_groups_in_one_cluster_as_merged_groups():
    docs = _group("g1") + _group("g2")
    clusters = {d.id: "one" for d in docs}
    score = score_near_duplicates(docs, clusters)
    assert score.negatives_merged == 2 and score.groups_merged == 1 and score.recall == 1.0


def test_documents_without_a_cluster_or_of_two_languages_are_clear_errors():
    docs = _group("g1")
    with pytest.raises(ValueError, match="no cluster for 1"):
        score_near_duplicates(docs, {d.id: "c" for d in docs[:-1]})
    other = [LabelledDocument("x", "id", "g9", "original", "teks")]
    with pytest.raises(ValueError, match="one language"):
        score_near_duplicates(docs + other, {d.id: "c" for d in docs + other})


def test_a_malformed_record_is_a_clear_error_naming_its_line(tmp_path):
    path = tmp_path / "fi.jsonl"
    path.write_text('{"id": "a", "lang": "fi", "group": "g", "role": "original", "text": "t"}\n'
                    '{"id": "b", "lang": "fi", "group": "g", "role": "copy", "text": "t"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"fi.jsonl:2: role 'copy'"):
        load_near_duplicates(path)
