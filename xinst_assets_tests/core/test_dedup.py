import random

import numpy as np
import pytest
from datasketch import MinHash

from xinst_assets.core.dedup import (
    DedupCandidate,
    MinhashConfig,
    MinhashSigner,
    deduplicate,
    shingle_hashes,
    shingles,
    signature_from_bytes,
    signature_to_bytes,
)

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
    assert config.candidate_probability(0.65) > 0.99 and config.candidate_probability(0.1) < 0.01
    datatrove = MinhashConfig(num_bands=14, rows_per_band=8, min_jaccard=None)
    assert 0.71 < datatrove.threshold < 0.73 and datatrove.candidate_probability(0.65) < 0.4


def test_a_similarity_outside_zero_to_one_is_a_clear_error():
    with pytest.raises(ValueError, match="min_jaccard must be within"):
        MinhashConfig(min_jaccard=1.5)


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


def test_near_duplicates_with_small_edits_are_found_and_point_at_the_earlier_copy():
    docs = [
        DedupCandidate("b", RICE_NEAR, published_at="2024-06-02"),
        DedupCandidate("a", RICE, published_at="2024-06-01"),
        DedupCandidate("c", RICE_SYNDICATED, published_at="2024-06-03"),
    ]
    outcome = deduplicate(docs, "Latn")
    assert [(d.doc_id, d.keep, d.reason, d.duplicate_of) for d in outcome.decisions] == [
        ("b", False, "dedup_near_duplicate", "a"),
        ("a", True, None, None),
        ("c", False, "dedup_near_duplicate", "a"),
    ]
    assert outcome.cluster_sizes == {"a": 3}


def test_a_short_text_with_a_new_header_a_changed_figure_and_a_dropped_sentence_is_a_near_duplicate():
    first_sentences = RICE.split(". ")
    edited_copy = "Diperbarui Senin pagi. " + ". ".join(first_sentences[:-1]).replace(
        "tiga bulan", "empat bulan"
    )
    assert len(RICE.split()) == 126  # the size of an X-Instruction response, where edits weigh a lot
    docs = [DedupCandidate("orig", RICE, "2024-01-01"), DedupCandidate("copy", edited_copy, "2024-01-02")]
    outcome = deduplicate(docs, "Latn")
    assert [(d.keep, d.duplicate_of) for d in outcome.decisions] == [(True, None), (False, "orig")]


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


def test_exact_duplicates_differing_only_in_spacing_are_dropped_whatever_their_doc_ids():
    docs = [DedupCandidate("x1", RICE), DedupCandidate("x2", "  " + RICE.replace(" ", "  ") + "\n")]
    outcome = deduplicate(docs, "Latn")
    assert [(d.keep, d.reason, d.duplicate_of) for d in outcome.decisions] == [
        (True, None, None),
        (False, "dedup_exact_duplicate", "x1"),
    ]


def test_dedup_end_to_end_keeps_exactly_the_first_seen_of_each_cluster():
    docs = [
        DedupCandidate("other", RICE_OTHER, seen_at="2024-07-01T00:00:00Z"),
        DedupCandidate("copy", RICE, seen_at="2024-07-02T00:00:00Z"),
        DedupCandidate("near", RICE_NEAR, seen_at="2024-07-01T00:00:00Z", published_at="2024-05-01"),
        DedupCandidate("orig", RICE, seen_at="2024-07-01T00:00:00Z", published_at="2024-06-01"),
        DedupCandidate("undated", RICE_SYNDICATED),
    ]
    outcome = deduplicate(docs, "Latn")
    survivors = [d.doc_id for d in outcome.decisions if d.keep]
    assert survivors == ["other", "near"]  # "near" was published first among the same-day ingests
    assert {d.doc_id: d.duplicate_of for d in outcome.decisions if not d.keep} == {
        "copy": "near",
        "orig": "near",
        "undated": "near",
    }
    assert outcome.cluster_sizes == {"other": 1, "near": 4}
    # The same documents in another input order give the same result.
    reordered = deduplicate(list(reversed(docs)), "Latn")
    assert sorted((d.doc_id, d.keep, d.duplicate_of) for d in reordered.decisions) == sorted(
        (d.doc_id, d.keep, d.duplicate_of) for d in outcome.decisions
    )


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


def test_incremental_dedup_keeps_earlier_representatives_across_runs():
    first = deduplicate([DedupCandidate("a", RICE), DedupCandidate("b", RICE_OTHER)], "Latn")
    stored = first.new_representatives
    assert [r.doc_id for r in stored] == ["a", "b"] and all(len(r.signature) == 896 for r in stored)

    # Next night: a near copy of "a" that was published earlier still loses to the stored representative.
    second = deduplicate(
        [
            DedupCandidate("a2", RICE_NEAR, published_at="2020-01-01"),
            DedupCandidate("c", "Sebuah teks baru " * 20),
        ],
        "Latn",
        previous=stored,
    )
    assert [(d.doc_id, d.keep, d.duplicate_of) for d in second.decisions] == [
        ("a2", False, "a"),
        ("c", True, None),
    ]
    assert second.cluster_sizes == {"a": 2, "c": 1}
    assert [r.doc_id for r in second.new_representatives] == ["c"]

    # Giving a stored representative again keeps it and adds nothing; an exact copy of it is a duplicate.
    stored_after = [
        r if r.doc_id != "a" else type(r)(r.doc_id, r.content_key, r.signature, 2) for r in stored
    ]
    third = deduplicate(
        [DedupCandidate("a", RICE), DedupCandidate("a-copy", RICE)], "Latn", previous=stored_after
    )
    assert [(d.doc_id, d.keep, d.reason) for d in third.decisions] == [
        ("a", True, None),
        ("a-copy", False, "dedup_exact_duplicate"),
    ]
    assert third.cluster_sizes == {"a": 3} and third.new_representatives == []


def test_documents_without_words_are_kept_and_never_merged_with_each_other():
    outcome = deduplicate([DedupCandidate("p1", "!!!"), DedupCandidate("p2", "???")], "Latn")
    assert [d.keep for d in outcome.decisions] == [True, True]


# --- The DuckDB index against an in-memory MinHashLSH --------------------------------------------------

from datasketch import LeanMinHash, MinHashLSH  # noqa: E402

import xinst_assets.core.dedup as dedup_module  # noqa: E402
from xinst_assets.core.dedup import (  # noqa: E402
    NearDuplicateIndex,
    StoredRepresentative,
    signature_matrix,
)
from xinst_assets.core.text import content_id  # noqa: E402


def _reference(docs, script, config=MinhashConfig(), previous=()):
    """The algorithm of the module docstring with datasketch's in-memory MinHashLSH (as dedup used to be),
    visiting ``docs`` in the order given."""
    signatures, has = MinhashSigner(config).signatures([d.text for d in docs], script)
    lsh = MinHashLSH(num_perm=config.num_perm, params=(config.num_bands, config.rows_per_band))
    rep_of, indexed, rank, by_content, sizes, touched, regiven = [], [], {}, {}, {}, set(), {}

    def index(signature, rep):
        rep_of.append(rep)
        indexed.append(signature)
        lsh.insert(len(rep_of) - 1, LeanMinHash(seed=config.seed, hashvalues=signature, scheme="affine64"))

    for r in previous:
        rank[r.doc_id] = len(rank)
        by_content.setdefault(r.content_key, r.doc_id)
        sizes[r.doc_id] = r.cluster_size
        regiven[r.doc_id] = r.content_key
        index(np.frombuffer(r.signature, dtype="<u8").astype(np.uint64), r.doc_id)
    out = []
    for doc, signature, shingled in zip(docs, signatures, has):
        key = content_id(doc.text)
        if regiven.get(doc.doc_id) == key:
            regiven.pop(doc.doc_id)
            out.append((doc.doc_id, True, None, None))
            continue
        if key in by_content:
            rep = by_content[key]
            sizes[rep] += 1
            touched.add(rep)
            out.append((doc.doc_id, False, "dedup_exact_duplicate", rep))
            continue
        if shingled:
            keys = list(lsh.query(LeanMinHash(seed=config.seed, hashvalues=signature, scheme="affine64")))
            if keys and config.min_jaccard is not None:
                keys = [k for k in keys if (indexed[k] == signature).mean() >= config.min_jaccard]
            matches = {rep_of[k] for k in keys}
            if matches:
                rep = min(matches, key=rank.__getitem__)
                sizes[rep] += 1
                touched.add(rep)
                by_content[key] = rep
                index(signature, rep)
                out.append((doc.doc_id, False, "dedup_near_duplicate", rep))
                continue
            index(signature, doc.doc_id)
        rank[doc.doc_id] = len(rank)
        by_content[key] = doc.doc_id
        sizes[doc.doc_id] = 1
        touched.add(doc.doc_id)
        out.append((doc.doc_id, True, None, None))
    return out, {d: sizes[d] for d in sorted(touched, key=rank.__getitem__)}


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


@pytest.mark.parametrize("min_jaccard", [0.5, None])
def test_the_index_decides_exactly_as_an_in_memory_minhash_lsh(min_jaccard):
    config = MinhashConfig(min_jaccard=min_jaccard)
    docs = _near_copies(11, 400)
    expected, sizes = _reference(docs, "Latn", config)
    outcome = deduplicate(docs, "Latn", config)
    assert [(d.doc_id, d.keep, d.reason, d.duplicate_of) for d in outcome.decisions] == expected
    assert outcome.cluster_sizes == sizes
    assert 0 < outcome.kept < len(docs)
    # ... and across runs: the second half against the representatives of the first.
    first = deduplicate(docs[:200], "Latn", config)
    again = sorted(docs[200:] + docs[:5], key=lambda d: d.doc_id)  # the visiting order (no timestamps)
    expected, sizes = _reference(again, "Latn", config, first.new_representatives)
    second = deduplicate(again, "Latn", config, first.new_representatives)
    assert [(d.doc_id, d.keep, d.reason, d.duplicate_of) for d in second.decisions] == expected
    assert second.cluster_sizes == sizes


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
    with NearDuplicateIndex(MinhashConfig(), tmp_path / "index", memory_limit="64MB", threads=1,
                            in_memory=in_memory) as index:
        assert (tmp_path / "index" / "index.duckdb").exists() != in_memory
        for start in range(0, len(docs), 64):  # in batches, as the asset feeds it
            end = start + 64
            index.add([d.doc_id for d in docs[start:end]], keys[start:end], signatures[start:end], has[start:end])
        rows = sorted((r for b in index.results(batch_rows=50) for r in b.to_pylist()), key=lambda r: r["pos"])
    assert [(r["doc_id"], r["kind"] == "kept", r["duplicate_of"]) for r in rows] == [
        (d.doc_id, d.keep, d.duplicate_of) for d in expected.decisions
    ]
    kept_sizes = {r["doc_id"]: r["cluster_size"] for r in rows if r["kind"] == "kept"}
    assert kept_sizes == expected.cluster_sizes
    assert not (tmp_path / "index" / "spill").exists()  # cleaned up


def test_stored_signatures_read_back_as_a_matrix_with_nulls_as_empty():
    import pyarrow as pa

    [signature], _ = MinhashSigner().signatures([RICE], "Latn")
    matrix, valid = signature_matrix(pa.array([signature_to_bytes(signature), None]), MinhashConfig())
    assert valid.tolist() == [True, False]
    assert np.array_equal(matrix[0], signature) and (matrix[1] == np.iinfo(np.uint64).max).all()
    assert StoredRepresentative("a", "k", signature_to_bytes(signature)).cluster_size == 1
