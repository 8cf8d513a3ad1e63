import itertools
import random

import numpy as np
import pyarrow as pa
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH

import xinst_assets.core.dedup as dedup_module
from xinst_assets.core.dedup import (
    DedupCandidate,
    MinhashConfig,
    MinhashSigner,
    NearDuplicateIndex,
    band_key_lists,
    deduplicate,
    shingle_hashes,
    shingles,
    signature_from_bytes,
    signature_matrix,
    signature_to_bytes,
)
from xinst_assets.core.text import content_id
from xinst_assets_tests.dedup_cases import Words, edited_group, jaccard_of

# Original texts: two reports on the same topic (rice prices), written differently.
RICE = (
    "Setelah naik selama hampir tiga bulan, harga beras di sejumlah pasar tradisional mulai turun pekan ini. "
    "Beras medium yang sebelumnya dijual seharga empat belas ribu lima ratus rupiah per kilogram kini turun "
    "menjadi "
    "sekitar tiga belas ribu tujuh ratus rupiah. Seorang pedagang di pasar induk mengatakan penurunan "
    "terjadi karena "
    "pasokan dari daerah sentra produksi mulai lancar seiring masuknya masa panen raya. Stok di gudang sudah "
    "bertambah dan pembeli juga mulai kembali normal, ujarnya. Meski demikian, harga beras premium masih "
    "bertahan "
    "tinggi karena permintaan dari rumah makan dan hotel tetap besar. Beberapa ibu rumah tangga yang "
    "ditemui di pasar "
    "mengaku lega karena pengeluaran dapur bisa sedikit berkurang. Dinas perdagangan berjanji akan terus "
    "memantau "
    "harga di lapangan dan menggelar operasi pasar jika harga kembali melonjak menjelang hari raya."
)
RICE_OTHER = (
    "Pemerintah daerah menggelar operasi pasar murah di tiga kecamatan untuk menahan kenaikan harga beras. "
    "Warga "
    "mengantre sejak pagi untuk membeli beras kemasan lima kilogram dengan harga di bawah pasaran. Menurut "
    "petugas, "
    "setiap keluarga hanya boleh membeli dua kemasan agar pembagian merata. Petani di desa sekitar justru "
    "mengeluhkan "
    "harga gabah yang rendah saat panen, sementara biaya pupuk dan sewa traktor terus naik. Pengamat "
    "pertanian "
    "menyarankan agar pemerintah memperbaiki rantai distribusi sehingga selisih harga di tingkat petani dan "
    "konsumen "
    "tidak terlalu jauh. Operasi pasar akan dilanjutkan bulan depan jika harga belum juga stabil."
)


def edited(text: str, edits: dict[str, str]) -> str:
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new, 1)
    return text


RICE_NEAR = edited(RICE, {"pekan ini": "minggu ini", "ujarnya": "katanya", "Meski demikian": "Namun"})
# Same text with a date line on top and different spacing: a typical syndicated copy.
RICE_SYNDICATED = "Diperbarui: Jumat, 21 Juni 2024\n" + RICE.replace(". ", ".\n")


def test_the_banding_arithmetic_keeps_datatrove_permutations_and_finds_short_document_edits():
    config = MinhashConfig()
    assert (config.ngram_size, config.num_perm) == (5, 112)  # datatrove's shingles and signature size
    assert config.threshold == pytest.approx((1 / 28) ** (1 / 4)) and 0.43 < config.threshold < 0.44
    assert config.candidate_probability(0.65) > 0.99 and config.candidate_probability(0.8) > 0.999999
    assert config.candidate_probability(0.1) < 0.01
    datatrove = MinhashConfig(num_bands=14, rows_per_band=8, min_jaccard=None)
    assert 0.71 < datatrove.threshold < 0.73 and datatrove.candidate_probability(0.65) < 0.4
    # The decisions depend on the check and the clustering rule too; the signatures do not.
    assert MinhashConfig(min_jaccard=0.7).fingerprint == config.fingerprint
    assert MinhashConfig(min_jaccard=0.7).decision_key != config.decision_key


@pytest.mark.parametrize("field, value", [("min_jaccard", 1.5), ("exact_margin", -0.1)])
def test_a_similarity_outside_zero_to_one_is_a_clear_error(field, value):
    with pytest.raises(ValueError, match=f"{field} must be within"):
        MinhashConfig(**{field: value})


@pytest.mark.parametrize("num_perm, seed", [(112, 1), (128, 42), (7, 0)])
def test_the_permutations_are_datasketchs(num_perm, seed):
    from xinst_assets.core.dedup import _permutations

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine64").permutations
    ours = _permutations(num_perm, seed)
    assert ours[0].dtype == ours[1].dtype == np.uint64
    assert np.array_equal(ours[0], a) and np.array_equal(ours[1], b)


def test_vectorised_signatures_equal_datasketch_minhash_update_batch():
    config = MinhashConfig()
    signatures, has = MinhashSigner(config).signatures([RICE, RICE_OTHER, ""], "Latn")
    for text, row in zip([RICE, RICE_OTHER], signatures):
        reference = MinHash(num_perm=112, seed=1, scheme="affine64", hashfunc=int)
        reference.update_batch([int(h) for h in shingle_hashes(text, "Latn", 5)])
        assert np.array_equal(reference.hashvalues, row)
    assert has == [True, True, False]


def test_shingles_are_word_five_grams_of_the_normalised_lower_cased_text():
    grams = shingles("Harga  BERAS naik lagi di pasar", "Latn", 5)
    assert grams == [["harga", "beras", "naik", "lagi", "di"], ["beras", "naik", "lagi", "di", "pasar"]]
    assert shingles("Dua kata", "Latn", 5) == [["dua", "kata"]]
    assert len(shingle_hashes("Harga  BERAS naik lagi di pasar", "Latn", 5)) == 2
    # Equal n-grams hash equally wherever they occur; different ones differ.
    a, b = (
        shingle_hashes("satu dua tiga empat lima enam", "Latn", 5),
        shingle_hashes("nol satu dua tiga empat lima", "Latn", 5),
    )
    assert a[0] == b[1] and a[1] != b[0]


def test_signatures_round_trip_through_bytes_and_reject_other_settings():
    config = MinhashConfig()
    [signature], _ = MinhashSigner(config).signatures([RICE], "Latn")
    data = signature_to_bytes(signature)
    assert len(data) == 112 * 8
    assert np.array_equal(signature_from_bytes(data, config), signature)
    with pytest.raises(ValueError, match="has 896 bytes, expected 512.*recompute"):
        signature_from_bytes(data, MinhashConfig(num_bands=16))


def test_near_duplicates_with_small_edits_are_found_and_point_at_the_most_central_copy():
    docs = [
        DedupCandidate("b", RICE_NEAR),
        DedupCandidate("c", RICE_SYNDICATED),
        DedupCandidate("z", RICE),
    ]
    outcome = deduplicate(docs, "Latn")
    # All three are near each other; the original is the nearest to both copies (each copy's own edits
    # are shared by no other), whatever its doc id.
    assert [(d.doc_id, d.keep, d.reason, d.duplicate_of) for d in outcome.decisions] == [
        ("b", False, "dedup_near_duplicate", "z"),
        ("c", False, "dedup_near_duplicate", "z"),
        ("z", True, None, None),
    ]
    assert outcome.cluster_sizes == {"z": 3}


def test_a_short_text_with_a_new_header_a_changed_figure_and_a_dropped_sentence_is_a_near_duplicate():
    first_sentences = RICE.split(". ")
    edited_copy = "Diperbarui Senin pagi. " + ". ".join(first_sentences[:-1]).replace(
        "tiga bulan", "empat bulan"
    )
    assert len(RICE.split()) == 126  # the size of an X-Instruction response, where edits weigh a lot
    assert 0.7 < jaccard_of(RICE, edited_copy) < 0.75  # near the threshold: settled by the exact similarity
    docs = [DedupCandidate("orig", RICE), DedupCandidate("copy", edited_copy)]
    assert deduplicate(docs, "Latn").clusters() == {"copy": {"orig", "copy"}}  # (a tie: the smaller doc id)
    # A text reposted verbatim is the more copied one: it represents the cluster.
    docs.append(DedupCandidate("repost", RICE))
    assert deduplicate(docs, "Latn").clusters() == {"orig": {"orig", "copy", "repost"}}


def test_candidates_below_the_similarity_check_are_kept_apart():
    docs = [DedupCandidate("a", RICE), DedupCandidate("b", RICE_NEAR)]
    assert deduplicate(docs, "Latn").kept == 1
    assert deduplicate(docs, "Latn", MinhashConfig(min_jaccard=0.95)).kept == 2


def test_different_texts_on_the_same_topic_are_not_merged():
    outcome = deduplicate([DedupCandidate("a", RICE), DedupCandidate("b", RICE_OTHER)], "Latn")
    assert [d.keep for d in outcome.decisions] == [True, True]
    assert outcome.cluster_sizes == {"a": 1, "b": 1}


def test_no_false_merges_among_many_documents_drawn_from_one_vocabulary():
    vocabulary = sorted(set(RICE.replace(",", "").replace(".", "").lower().split()))
    rng = random.Random(7)
    docs = [DedupCandidate(f"d{i:03d}", " ".join(rng.choices(vocabulary, k=200))) for i in range(300)]
    outcome = deduplicate(docs, "Latn")
    assert outcome.kept == 300


def test_exact_duplicates_differing_only_in_spacing_are_one_text_represented_by_the_smallest_doc_id():
    docs = [DedupCandidate("x2", "  " + RICE.replace(" ", "  ") + "\n"), DedupCandidate("x1", RICE)]
    outcome = deduplicate(docs, "Latn")
    assert [(d.keep, d.reason, d.duplicate_of) for d in outcome.decisions] == [
        (False, "dedup_exact_duplicate", "x1"),
        (True, None, None),
    ]
    assert outcome.cluster_sizes == {"x1": 2}


def test_a_doc_id_given_twice_with_different_texts_is_a_clear_error():
    with pytest.raises(ValueError, match="given twice"):
        deduplicate([DedupCandidate("a", RICE), DedupCandidate("a", RICE_OTHER)], "Latn")


# --- Order independence, chains and hard negatives --------------------------------------------------------


def _clusters(docs, config=MinhashConfig()) -> dict[str, frozenset[str]]:
    return deduplicate(docs, "Latn", config).clusters()


def test_copies_edited_in_different_places_stay_with_their_original_in_every_visiting_order():
    """Each copy is near the original (0.74) but not near the other copies (0.54): visiting a copy first used
    to make it the representative and split the other copies off. The cluster is the original's star now."""
    group = edited_group(Words(3), "g", copies=3)
    assert all(jaccard_of(group.original, c) > 0.7 for c in group.copies)
    assert all(jaccard_of(a, b) < 0.6 for a, b in itertools.combinations(group.copies, 2))
    docs = [DedupCandidate("orig", group.original)] + [
        DedupCandidate(f"copy{k}", text) for k, text in enumerate(group.copies)]
    expected = {"orig": frozenset({"orig", "copy0", "copy1", "copy2"})}
    for order in itertools.permutations(docs):
        assert _clusters(list(order)) == expected


def test_the_same_documents_in_any_order_give_the_same_clusters_and_representatives():
    words = Words(5)
    docs = []
    for g in range(6):
        group = edited_group(words, f"g{g}", copies=2 + g % 3, shared=9)
        for k, text in enumerate([*group.members(), *group.negatives]):
            docs.append(DedupCandidate(f"g{g}-{k}", text))
    docs += [DedupCandidate(d.doc_id, d.text) for d in _near_copies(21, 150)]
    expected = _clusters(docs)
    for seed in range(4):
        shuffled = list(docs)
        random.Random(seed).shuffle(shuffled)
        assert _clusters(shuffled) == expected
    # every group is one cluster, represented by its original, its hard negative alone
    for g in range(6):
        members = {f"g{g}-{k}" for k in range(3 + g % 3)}
        assert expected[f"g{g}-0"] == members and expected[f"g{g}-{len(members)}"] == {f"g{g}-{len(members)}"}


def test_a_chain_of_edits_does_not_carry_a_cluster_beyond_its_representatives_neighbours():
    """d0 - d1 - d2 - d3, each a near copy of the next (a passage replaced at every step), d0 and d3 share
    little: the old transitive clusters merged all four; every member must be near its representative."""
    words = Words(8)
    body = words.sentences(12)
    chain = [list(body)]
    for step in range(3):
        text = list(chain[-1])
        text[2 + 3 * step : 4 + 3 * step] = words.sentences(2)
        chain.append(text)
    texts = [" ".join(t) for t in chain]
    assert all(jaccard_of(a, b) >= 0.6 for a, b in zip(texts, texts[1:]))
    assert jaccard_of(texts[0], texts[2]) < 0.6 and jaccard_of(texts[0], texts[3]) < 0.4
    docs = [DedupCandidate(f"d{k}", text) for k, text in enumerate(texts)]
    outcome = deduplicate(docs, "Latn")
    by_id = {d.doc_id: d.text for d in docs}
    for rep, members in outcome.clusters().items():
        assert all(jaccard_of(by_id[rep], by_id[m]) >= 0.6 for m in members)
    assert not any({"d0", "d3"} <= members for members in outcome.clusters().values())
    assert len(outcome.clusters()) == 2


def test_a_hard_negative_is_not_merged_through_a_document_near_both():
    """An article with two copies, a page of the same template and intro with another ending (0.49 with the
    article), and a page that mixes both endings, near each: a transitive cluster would join the article and
    the hard negative through it; as stars it joins one side only."""
    words = Words(9)
    header, intro, footer = words.sentences(1), words.sentences(9), words.sentences(1)
    ending, other_ending = words.sentences(5), words.sentences(5)
    original = " ".join(header + intro + ending + footer)
    negative = " ".join(header + intro + other_ending + footer)
    bridge = " ".join(header + intro + ending[:2] + other_ending[2:] + footer)
    copies = []
    for k in range(2):
        edited = list(intro)
        edited[1 + 4 * k : 3 + 4 * k] = words.sentences(2)
        copies.append(" ".join(header + edited + ending + footer))
    assert jaccard_of(original, negative) < 0.5
    assert jaccard_of(bridge, original) >= 0.6 and jaccard_of(bridge, negative) >= 0.6
    docs = [DedupCandidate("orig", original), DedupCandidate("copy0", copies[0]),
            DedupCandidate("copy1", copies[1]), DedupCandidate("neg", negative), DedupCandidate("bridge", bridge)]
    for order in itertools.islice(itertools.permutations(docs), 0, None, 5):  # 24 of the 120 orders
        clusters = _clusters(list(order))
        assert clusters["orig"] >= {"orig", "copy0", "copy1"}
        assert not any("neg" in m and m & {"orig", "copy0", "copy1"} for m in clusters.values()), clusters


def test_pairs_near_the_threshold_are_settled_by_their_exact_similarity():
    """Template pages at 0.49-0.58 and copies at 0.62-0.7: MinHash's estimate (standard error ~0.046) cannot
    tell them apart reliably, the exact check can; without texts the estimate decides alone."""
    words = Words(11)
    docs, expected = [], {}
    for g in range(12):
        base = words.sentences(16)
        near = list(base)
        near[5:7] = words.sentences(2)  # ~0.68
        far = list(base)
        far[4:9] = words.sentences(5)  # ~0.45
        texts = [" ".join(base), " ".join(near), " ".join(far)]
        ids = [f"g{g:02d}-base", f"g{g:02d}-near", f"g{g:02d}-far"]
        assert jaccard_of(texts[0], texts[1]) > 0.6 > 0.5 > jaccard_of(texts[0], texts[2]) > 0.4
        assert jaccard_of(texts[1], texts[2]) < 0.5
        docs += [DedupCandidate(i, t) for i, t in zip(ids, texts)]
        expected[ids[0]] = frozenset(ids[:2])
        expected[ids[2]] = frozenset(ids[2:])
    config = MinhashConfig()
    signatures, has = MinhashSigner(config).signatures([d.text for d in docs], "Latn")
    texts = {d.doc_id: d.text for d in docs}
    with NearDuplicateIndex(config, texts=lambda ids: [texts[i] for i in ids], script="Latn") as index:
        index.add([d.doc_id for d in docs], [content_id(d.text) for d in docs], signatures, has)
        rows = [r for b in index.results() for r in b.to_pylist()]
        assert index.stats.exact_checks > 0 and index.stats.near_pairs == 12
    clusters: dict[str, set[str]] = {}
    for r in rows:
        clusters.setdefault(r["duplicate_of"] or r["doc_id"], set()).add(r["doc_id"])
    assert clusters == expected
    with NearDuplicateIndex(config) as blind:  # no texts: the estimate alone
        blind.add([d.doc_id for d in docs], [content_id(d.text) for d in docs], signatures, has)
        list(blind.results())
        assert blind.stats.exact_checks == 0


def test_thai_near_duplicates_are_found_through_syllable_shingles():
    thai = (
        "เช้าวันนี้นักเรียนในโรงเรียนประจำหมู่บ้านช่วยกันปลูกต้นไม้ ครูสอนวิธีดูแลต้นกล้าอย่างถูกต้อง "
        "เด็กทุกคนตั้งชื่อให้ต้นไม้ของตัวเองและสัญญาว่าจะรดน้ำทุกวัน "
        "ผู้ใหญ่ในหมู่บ้านบอกว่างานแบบนี้ช่วยให้อากาศ"
        "สะอาดและลดความร้อน ตอนเย็นทุกคนแบ่งขนมกันกินและนัดพบกันอีกครั้งในเดือนหน้า"
    )
    near = thai.replace("ตอนเย็น", "ตอนค่ำ")
    outcome = deduplicate([DedupCandidate("t1", thai), DedupCandidate("t2", near)], "Thai")
    assert [(d.keep, d.duplicate_of) for d in outcome.decisions] == [(True, None), (False, "t1")]


def test_documents_without_words_are_kept_and_never_merged_with_each_other():
    outcome = deduplicate([DedupCandidate("p1", "!!!"), DedupCandidate("p2", "???")], "Latn")
    assert [d.keep for d in outcome.decisions] == [True, True]


# --- The DuckDB index against a plain implementation of the rule -----------------------------------------


def _reference(docs, script, config=MinhashConfig()):
    """The rule of the module docstring written plainly: datasketch's in-memory MinHashLSH for candidates, the
    estimate or the exact Jaccard of the word 5-gram sets (``shingles``) for the check, and the textbook
    greedy stars (in rank order, an unclaimed document becomes a representative and claims its unclaimed
    neighbours). Returns (doc id, keep, reason, duplicate_of) per document and the cluster sizes."""
    signatures, has = MinhashSigner(config).signatures([d.text for d in docs], script)
    copies: dict[str, list[int]] = {}
    for k, d in enumerate(docs):
        copies.setdefault(content_id(d.text), []).append(k)
    node_of = {k: min(group, key=lambda m: docs[m].doc_id) for group in copies.values() for k in group}
    nodes = sorted({n for n in node_of.values() if has[n]})
    lsh = MinHashLSH(num_perm=config.num_perm, params=(config.num_bands, config.rows_per_band))
    for n in nodes:
        lsh.insert(n, LeanMinHash(seed=config.seed, hashvalues=signatures[n], scheme="affine64"))
    grams = {n: {tuple(g) for g in shingles(docs[n].text, script, config.ngram_size)} for n in nodes}
    neighbours: dict[int, dict[int, int]] = {n: {} for n in nodes}
    for n in nodes:
        for m in lsh.query(LeanMinHash(seed=config.seed, hashvalues=signatures[n], scheme="affine64")):
            if m == n:
                continue
            equal = int((signatures[n] == signatures[m]).sum())
            estimate = equal / config.num_perm
            if config.min_jaccard is None:
                near = True
            elif estimate >= config.min_jaccard + config.exact_margin:
                near = True
            elif estimate < config.min_jaccard - config.exact_margin:
                near = False
            else:
                near = len(grams[n] & grams[m]) / len(grams[n] | grams[m]) >= config.min_jaccard
            if near:
                neighbours[n][m] = equal
    copies_of = {n: sum(1 for k in node_of if node_of[k] == n) for n in nodes}
    ranked = sorted((n for n in nodes if neighbours[n]),
                    key=lambda n: (-copies_of[n] - sum(copies_of[m] for m in neighbours[n]), -copies_of[n],
                                   -sum(neighbours[n].values()), docs[n].doc_id))
    rep: dict[int, int] = {}
    for n in ranked:
        if n in rep:
            continue
        rep[n] = n
        for m in neighbours[n]:
            rep.setdefault(m, n)
    out, sizes = [], {}
    for k, d in enumerate(docs):
        node = node_of[k]
        r = rep.get(node, node)
        sizes[docs[r].doc_id] = sizes.get(docs[r].doc_id, 0) + 1
        if k != node:
            out.append((d.doc_id, False, "dedup_exact_duplicate", docs[r].doc_id))
        elif r != k:
            out.append((d.doc_id, False, "dedup_near_duplicate", docs[r].doc_id))
        else:
            out.append((d.doc_id, True, None, None))
    return out, dict(sorted(sizes.items()))


def _near_copies(seed: int, count: int) -> list[DedupCandidate]:
    """Documents from a small vocabulary with exact and near copies (word edits) of earlier ones."""
    rng = random.Random(seed)
    vocabulary = sorted(set((RICE + " " + RICE_OTHER).replace(",", "").replace(".", "").lower().split()))
    texts: list[str] = []
    for _ in range(count):
        roll = rng.random()
        if texts and roll < 0.15:
            texts.append(rng.choice(texts))
        elif texts and roll < 0.5:
            words = rng.choice(texts).split()
            for _ in range(rng.randint(1, 12)):
                words[rng.randrange(len(words))] = rng.choice(vocabulary)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choices(vocabulary, k=rng.randint(3, 60))))
    return [DedupCandidate(f"d{i:04d}", t) for i, t in enumerate(texts)]


@pytest.mark.parametrize("min_jaccard", [0.6, None])
def test_the_index_decides_exactly_as_a_plain_implementation_of_the_rule(min_jaccard):
    config = MinhashConfig(min_jaccard=min_jaccard)
    docs = _near_copies(11, 400)
    expected, sizes = _reference(docs, "Latn", config)
    outcome = deduplicate(docs, "Latn", config)
    assert [(d.doc_id, d.keep, d.reason, d.duplicate_of) for d in outcome.decisions] == expected
    assert outcome.cluster_sizes == sizes
    assert 0 < outcome.kept < len(docs) and max(sizes.values()) > 2
    # ... whatever the order of the input.
    shuffled = list(docs)
    random.Random(1).shuffle(shuffled)
    again = {d.doc_id: d for d in deduplicate(shuffled, "Latn", config).decisions}
    assert [again[d.doc_id] for d in outcome.decisions] == outcome.decisions


def test_colliding_band_hashes_change_nothing(monkeypatch):
    docs = _near_copies(12, 150)
    expected = deduplicate(docs, "Latn")
    # Every band of every document in one bucket: every pair is a candidate, and only whole equal bands
    # (datasketch's candidates) that pass the similarity check may merge.
    monkeypatch.setattr(dedup_module, "band_hashes", lambda s, c: np.zeros((len(s), c.num_bands), np.uint64))
    assert deduplicate(docs, "Latn") == expected


@pytest.mark.parametrize("in_memory, join_rows", [(False, None), (True, None), (False, 50)],
                         ids=["file", "in-memory", "one-band-per-join"])
def test_the_index_streams_batches_and_spills_to_its_directory(tmp_path, monkeypatch, in_memory, join_rows):
    if join_rows:  # a large index: candidates joined a band at a time
        monkeypatch.setattr(NearDuplicateIndex, "join_rows", join_rows)
    docs = _near_copies(13, 300)
    expected = deduplicate(docs, "Latn")
    signatures, has = MinhashSigner().signatures([d.text for d in docs], "Latn")
    keys = [content_id(d.text) for d in docs]
    texts = {d.doc_id: d.text for d in docs}
    with NearDuplicateIndex(MinhashConfig(), tmp_path / "index", memory_limit="64MB", threads=1,
                            in_memory=in_memory, texts=lambda ids: [texts[i] for i in ids], script="Latn") as index:
        assert (tmp_path / "index" / "index.duckdb").exists() != in_memory
        for start in range(0, len(docs), 64):  # in batches, as the asset feeds it
            end = start + 64
            index.add([d.doc_id for d in docs[start:end]], keys[start:end], signatures[start:end], has[start:end])
        rows = sorted((r for b in index.results(batch_rows=50) for r in b.to_pylist()), key=lambda r: r["pos"])
    assert [(r["doc_id"], r["kind"] == "kept", r["duplicate_of"]) for r in rows] == [
        (d.doc_id, d.keep, d.duplicate_of) for d in expected.decisions
    ]
    assert {r["doc_id"]: r["cluster_size"] for r in rows if r["kind"] == "kept"} == expected.cluster_sizes
    assert all(signature_from_bytes(r["signature"], MinhashConfig()).tolist() == s.tolist()
               for r, s in zip(rows, signatures))
    # a component is named by its best-ranked document, a representative: the same for all its members
    component = {r["doc_id"]: r["component"] for r in rows}
    for r in rows:
        assert component[r["duplicate_of"] or r["doc_id"]] == r["component"]
        assert component[r["component"]] == r["component"]
    assert not (tmp_path / "index" / "spill").exists()  # cleaned up


def test_stored_signatures_read_back_as_a_matrix_with_nulls_as_empty():
    [signature, empty], _ = MinhashSigner().signatures([RICE, "!!!"], "Latn")
    column = pa.array([signature_to_bytes(signature), None, signature_to_bytes(empty)])
    matrix, valid = signature_matrix(column, MinhashConfig())
    assert valid.tolist() == [True, False, True]
    assert np.array_equal(matrix[0], signature) and (matrix[1] == np.iinfo(np.uint64).max).all()
    # band keys: a text without shingles has none (it is near nothing), nor a missing signature
    keys = band_key_lists(column, MinhashConfig())
    assert [k is None for k in keys.to_pylist()] == [False, True, True] and len(keys[0]) == 28
