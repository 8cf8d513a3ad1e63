"""The partition's language decision: fastText where it is sure, lingua for the uncertain band, word cues for
Indonesian/Malay, and mixed-language documents (real lid.176 and real lingua models, original texts)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from xinst_assets.core.filtering import Document, DocumentScreener, FilterSettings
from xinst_assets.core.lid import LidPolicy
from xinst_assets.core.lid_decision import LanguageJudge, cue_verdict, english_hints, load_cues, segments
from xinst_assets.core.second_lid import SecondOpinion

MALAY = (
    "Kerajaan negeri akan menaik taraf jalan raya di kawasan luar bandar mulai bulan hadapan. Menurut Exco Kerja "
    "Raya, peruntukan sebanyak RM12 juta telah diluluskan untuk projek tersebut. Penduduk kampung berharap "
    "kerja-kerja pembaikan dapat disiapkan sebelum musim tengkujuh kerana jalan sedia ada sering rosak.")
MALAY_FORUM = (
    "Saya pun pernah alami masalah yang sama dengan telefon bimbit saya. Cuba tekan butang kuasa selama sepuluh "
    "saat sehingga telefon hidup semula. Kalau masih tak boleh, bawa ke kedai di pusat beli-belah berdekatan, "
    "biasanya mereka caj lebih kurang RM50 sahaja untuk periksa.")
INDONESIAN = (
    "Pemerintah kabupaten akan memperbaiki jalan di daerah pedesaan mulai bulan depan. Menurut kepala dinas "
    "pekerjaan umum, anggaran sebesar Rp12 miliar sudah disetujui untuk proyek itu. Warga desa berharap "
    "perbaikan bisa selesai sebelum musim hujan karena jalan yang ada sering rusak dan berlubang.")
SWAHILI = (
    "Serikali imetangaza kuwa ujenzi wa barabara mpya kati ya mji na kijiji cha Mwembeni utaanza mwezi ujao. "
    "Mradi huo unatarajiwa kugharimu shilingi bilioni mbili na kukamilika ndani ya miezi kumi na minane. Wakazi "
    "wa eneo hilo wamefurahishwa na habari hizo kwa sababu barabara ya sasa haipitiki wakati wa mvua.")
ZULU = (
    "Umkhandlu wedolobha umemezele ukuthi amanzi azovalwa kusukela ngoLwesibili kuya ngoLwesithathu ngenxa "
    "yomsebenzi wokulungisa amapayipi. Izakhamuzi zicelwa ukuthi zigcine amanzi anele futhi zisebenzise amanzi "
    "ngokucophelela. Amaloli amanzi azotholakala ezindaweni ezithintekile kusukela ekuseni.")
ESTONIAN = (
    "Linnavalitsus otsustas eelmisel nädalal, et bussiliinid number 5 ja 12 hakkavad järgmisest kuust sõitma "
    "sagedamini. Tipptunnil väljub buss iga kümne minuti järel. Elanikud on juba pikka aega kurtnud, et "
    "hommikused bussid on ülerahvastatud ja sageli hilinevad.")
NEPALI = (
    "काठमाडौं महानगरपालिकाले आगामी महिनादेखि सार्वजनिक यातायातमा नयाँ नियम लागू गर्ने निर्णय गरेको छ। यात्रुहरूले "
    "अब टिकट अनिवार्य रूपमा लिनुपर्नेछ। नगरका अधिकारीहरूका अनुसार यो नियमले सडकमा हुने भीडभाड कम गर्न मद्दत गर्नेछ।")
MARATHI = (
    "महानगरपालिकेने पुढील महिन्यापासून शहरातील पाणीपुरवठ्याच्या वेळेत बदल करण्याचा निर्णय घेतला आहे. नागरिकांना "
    "सकाळी सहा ते नऊ या वेळेत पाणी मिळेल. जुन्या जलवाहिन्या बदलण्याचे काम सुरू असल्यामुळे हा बदल करण्यात आला "
    "आहे, असे अधिकाऱ्यांनी सांगितले.")
# An Indonesian forum post that quotes an English error message, and an English post quoting Indonesian.
INDONESIAN_QUOTING_ENGLISH = (
    "Halo semua, saya lagi coba pasang aplikasi kasir di laptop kantor tapi selalu gagal di langkah terakhir.\n"
    "Pesan errornya begini: \"The installation could not be completed because the required framework is not "
    "available on this computer.\"\n"
    "Sudah saya coba ulang dua kali dan juga restart laptopnya, hasilnya tetap sama. Ada yang pernah mengalami "
    "masalah seperti ini? Mohon bantuannya, terima kasih banyak sebelumnya.")
ENGLISH_QUOTING_INDONESIAN = (
    "Hi everyone, I ordered a phone case from a shop in Jakarta three weeks ago and it still has not arrived.\n"
    "The only message I got from the seller says \"Pesanan Anda sedang dikemas dan akan segera dikirim.\"\n"
    "I have written to them twice in English and once with a translator, but nobody answers. Does anyone know "
    "how long these shops usually take, and whether I should ask my bank for a refund at this point?")


class CountingOpinion(SecondOpinion):
    """The real lingua model, counting the texts it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def predict(self, texts, candidates, max_chars=None):
        self.asked += len(texts)
        return super().predict(texts, candidates, max_chars)


@pytest.fixture(scope="module")
def second() -> CountingOpinion:
    return CountingOpinion()


def _decide(registry, identifier, code, texts, second, policy=LidPolicy()):
    screener = DocumentScreener(registry.get(code), identifier, FilterSettings.for_language(registry.get(code),
                                lid_policy=policy), second=second)
    return screener.screen([Document(str(k), t) for k, t in enumerate(texts)], signatures=False).decisions


def test_malaysian_malay_that_fasttext_calls_indonesian_is_dropped_by_the_indonesian_partition(
    registry, identifier, second
):
    [formal, forum, indonesian] = _decide(registry, identifier, "id", [MALAY, MALAY_FORUM, INDONESIAN], second)
    assert identifier.predict([MALAY_FORUM])[0].lang == "id"  # lid.176 alone keeps it (0.6 id, 0.3 ms)
    assert not formal.keep and not forum.keep and formal.reason == forum.reason == "lid_wrong_language:ms"
    assert forum.lid_decided_by in ("second_opinion", "word_cues")
    assert indonesian.keep and indonesian.lid_decided_by in ("second_opinion", "word_cues")


def test_clean_swahili_that_fasttext_scores_low_is_kept_and_zulu_is_not(registry, identifier, second):
    assert identifier.predict([SWAHILI])[0].score < 0.9
    swahili, zulu = _decide(registry, identifier, "sw", [SWAHILI, ZULU], second)
    assert swahili.keep and swahili.lid_decided_by == "second_opinion" and swahili.lid_second_lang == "sw"
    assert not zulu.keep and zulu.reason == "lid_wrong_language:zu"
    # Zulu in another Latin partition: lingua chooses among every Latin language the project knows.
    for code in ("id", "tr", "fi"):
        [decision] = _decide(registry, identifier, code, [ZULU], second)
        assert not decision.keep, code


def test_estonian_marathi_and_nepali_are_dropped_by_finnish_and_hindi(registry, identifier, second):
    [estonian] = _decide(registry, identifier, "fi", [ESTONIAN], second)
    marathi, nepali = _decide(registry, identifier, "hi", [MARATHI, NEPALI], second)
    assert not estonian.keep and not marathi.keep and not nepali.keep
    # lingua has no Nepali: fastText, which has, decides it.
    assert not second.supports("ne") and nepali.reason == "lid_wrong_language:ne"


def test_a_post_mostly_in_the_language_quoting_english_is_kept_and_the_reverse_is_dropped(
    registry, identifier, second
):
    kept, dropped = _decide(registry, identifier, "id", [INDONESIAN_QUOTING_ENGLISH, ENGLISH_QUOTING_INDONESIAN],
                            second)
    assert kept.keep
    assert not dropped.keep and dropped.reason == "lid_wrong_language:en"
    assert dropped.lid_english_share is not None and dropped.lid_english_share > 0.5


def test_without_the_mixed_rule_the_english_quote_weighs_on_the_decision(registry, identifier, second):
    off = replace(LidPolicy(), mixed=False)
    [decision] = _decide(registry, identifier, "id", [ENGLISH_QUOTING_INDONESIAN], second, off)
    assert decision.lid_english_share is None


def test_the_second_model_is_asked_only_about_the_uncertain_documents(registry, identifier, second):
    before = second.asked
    decisions = _decide(registry, identifier, "fi", [ESTONIAN.replace("Linnavalitsus", "Kaupunki"), SWAHILI,
                                                     "Tämä on suomenkielinen teksti, joka kertoo kaupungin uudesta "
                                                     "kirjastosta. Kirjasto avataan ensi kuussa ja siellä on paljon "
                                                     "uusia kirjoja, lehtiä ja tietokoneita kaikkien käyttöön. " * 2],
                        second)
    sure = [d for d in decisions if d.lid_decided_by == "fasttext"]
    assert len(sure) >= 1 and all(d.lid_second_lang is None for d in sure)
    assert second.asked - before == sum(d.lid_decided_by in ("second_opinion", "word_cues") for d in decisions)


def test_fasttext_only_is_the_rule_of_earlier_versions(registry, identifier):
    [forum] = _decide(registry, identifier, "id", [MALAY_FORUM], None, LidPolicy.fasttext_only())
    assert forum.keep and forum.lid_decided_by == "fasttext"  # what the second opinion fixes
    [swahili] = _decide(registry, identifier, "sw", [SWAHILI], None, LidPolicy.fasttext_only())
    assert swahili.lid_second_lang is None


def test_segments_are_lines_quotations_apart_and_sentences_of_long_lines():
    text = ('Sudah dicoba tapi muncul "Error: the file could not be opened for writing." terus.\n\n'
            + "Kalimat pertama cukup panjang untuk dipotong di sini. " * 5)
    parts = segments(text)
    assert parts[0] == "Sudah dicoba tapi muncul"
    assert parts[1] == '"Error: the file could not be opened for writing."'
    assert parts[2] == "terus."
    assert len(parts) == 3 + 5


def test_english_hints_need_two_distinct_english_function_words():
    assert english_hints("Please check that the cable is connected")
    assert not english_hints("Mau pesan the botol dua")  # one English word is not a quotation
    assert not english_hints(SWAHILI) and not english_hints(INDONESIAN)


def test_word_cues_decide_between_indonesian_and_malay_only_when_clear():
    cues = load_cues()
    assert cue_verdict(MALAY_FORUM, "id", "ms", cues) == "ms"
    assert cue_verdict(INDONESIAN, "id", "ms", cues) == "id"
    assert cue_verdict("Harga beras naik lagi minggu ini.", "id", "ms", cues) is None
    assert cue_verdict(INDONESIAN, "fi", "et", cues) is None  # no cues for that pair


def test_a_language_the_second_model_does_not_know_is_decided_by_fasttext_alone(registry, identifier):
    judge = LanguageJudge(registry.get("sw"), identifier, LidPolicy(), SecondOpinion())
    assert judge.second is not None
    from xinst_assets.languages import Language

    unknown = LanguageJudge(Language("xx", "Unknown", "Latn"), identifier, LidPolicy(), SecondOpinion())
    assert unknown.second is None
