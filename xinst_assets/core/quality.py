"""Quality heuristics of the Gopher / C4 / FineWeb family, as one filter contract for every language.

Every rule is a typed field of :class:`QualityThresholds` with a documented default and its source; ``None``
turns a rule off. Defaults are adapted per script (:data:`SCRIPT_DEFAULTS`, e.g. no line-punctuation rule for
Thai, which marks no sentence ends) and then per language from the registry's ``quality:`` overrides
(:func:`thresholds_for`). :func:`check_quality` returns the first failing rule as a reason string prefixed
with ``quality_``; :func:`quality_signals` returns every measured value for the audit trail.

Sources:
  Gopher: Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher",
          appendix A.
  C4:     Raffel et al. 2020, section 2.2 (lines without terminal punctuation, "lorem ipsum", "javascript").
  FineWeb: Penedo et al. 2024, the three custom filters (line punctuation, short lines, duplicated lines).
  X-Instruction: Li et al. 2024, responses average about 1,000-1,300 characters.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property, lru_cache
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from xinst_assets.core.words import ALPHA, SCRIPTIO_CONTINUA, SPACE, TextBatch, Vocabulary, char_tables, split_words
from xinst_assets.languages import Language


@dataclass(frozen=True)
class QualityThresholds:
    """Bounds of the quality rules. ``None`` turns a rule off. Ratios are fractions in [0, 1]."""

    # Length of the document in characters. The texts become responses: X-Instruction's average 1,000-1,300
    # characters, so 200 keeps a short but complete answer (a paragraph) and 8,000 (about 2,000 tokens) keeps
    # a response that still fits beside its instruction in a 4k-token context.
    min_chars: int | None = 200
    max_chars: int | None = 8_000
    # Gopher: 50 to 100,000 words.
    min_words: int | None = 50
    max_words: int | None = 100_000
    # Gopher: mean word length within 3 to 10 characters (per script, see SCRIPT_DEFAULTS).
    min_mean_word_length: float | None = 3.0
    max_mean_word_length: float | None = 10.0
    # Gopher: at most 0.1 hash signs or ellipses per word.
    max_symbol_word_ratio: float | None = 0.1
    # Gopher: at most 90% of lines start with a bullet, at most 30% end with an ellipsis.
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    # Gopher: at least 80% of (whitespace-separated) words contain a letter. Weighted by characters here: a
    # score "4–2", a quantity "5 dl" or a price is a short token, and a sports or market report has many of
    # them, while a table dump is nearly all digits; counted by characters the first stays well under the
    # bound and the second far over it (Thai's whitespace separates phrases, not words: counting tokens there
    # made one number weigh as much as a phrase).
    max_non_alpha_words_ratio: float | None = 0.2
    # Gopher repetition: at most 30% of lines are repeats, holding at most 20% of the characters.
    max_dup_line_fraction: float | None = 0.3
    max_dup_line_char_fraction: float | None = 0.2
    # Gopher repetition: the most frequent 2-, 3-, 4-gram covers at most 20%, 18%, 16% of the word characters.
    max_top_ngram_char_fraction: tuple[tuple[int, float], ...] | None = ((2, 0.20), (3, 0.18), (4, 0.16))
    # Gopher repetition: repeated 5- to 10-grams cover at most 15% ... 10% of the word characters.
    max_dup_ngram_char_fraction: tuple[tuple[int, float], ...] | None = (
        (5, 0.15),
        (6, 0.14),
        (7, 0.13),
        (8, 0.12),
        (9, 0.11),
        (10, 0.10),
    )
    # FineWeb: at least 12% of lines end with terminal punctuation (C4 required it of every line, which
    # FineWeb found removes too much, and more so outside English). Weighted by characters here (the share of
    # the lines' characters in lines that end a sentence, or hold one followed by more text: a forum post
    # whose last sentence has no full stop is still prose): a recipe's ingredient list or a results table is
    # many short unpunctuated lines beside a few long paragraphs of prose; a menu or a keyword list has none.
    min_line_punct_ratio: float | None = 0.12
    # FineWeb: at most 67% of lines are short (30 characters or fewer); weighted by characters too, so that a
    # list of ingredients or questions beside its prose passes and a page of menu entries does not.
    max_short_lines_ratio: float | None = 0.67
    short_line_chars: int = 30
    # FineWeb: at most 0.3 line breaks per word (lists and menus have a word or two per line).
    max_lines_per_word: float | None = 0.3
    # xinst: at most 20% of lines carry a boilerplate marker (cookie banners, log-in forms, copyright
    # footers, share buttons), in any of the registry's languages. One footer line in a short article is
    # 1 line in 6 (17%); a menu or form page is mostly such lines.
    max_boilerplate_lines_ratio: float | None = 0.2
    # ... and those lines hold more than 10% of the characters: a how-to about passwords has a heading or two
    # with "password" in it (many lines, few characters), a consent or tag page is mostly such lines.
    max_boilerplate_chars_ratio: float | None = 0.1
    # Only lines of at most this many characters count: a notice is short, while a paragraph that mentions
    # cookies is content. 160 characters holds a two-sentence cookie banner.
    boilerplate_line_chars: int = 160
    # Interface strings ("Log in", "Forgot your password?", "Read more") count on lines of at most 8 words:
    # enough for a form row ("Belum punya akun? Daftar sekarang"), while a sentence about passwords is longer.
    # Menu lines (three or more short items between separators: "Home | News | Sport") count too, in any
    # language.
    interface_line_words: int = 8
    # C4: any "lorem ipsum" marks a template page.
    reject_lorem_ipsum: bool = True
    # xinst: at most 10% of the non-space characters are code punctuation ({}[]<>=;$\|`): a page of source
    # code or markup has 12-20%, prose that quotes a command or an error line or holds a small table under 5%.
    # (C4 dropped every page with a curly bracket; this keeps the prose that mentions code.)
    max_code_chars_ratio: float | None = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) or not f.name.endswith(("_ratio", "_fraction")):
                continue
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"quality threshold {f.name} must be within [0, 1] or None, got {value!r}")
        for name in ("max_top_ngram_char_fraction", "max_dup_ngram_char_fraction"):
            pairs = getattr(self, name)
            if pairs is None:
                continue
            for pair in pairs:
                if len(pair) != 2 or int(pair[0]) < 1 or not 0.0 <= float(pair[1]) <= 1.0:
                    raise ValueError(
                        f"{name} must be (n, fraction) pairs with n >= 1, fraction in [0, 1]: {pair!r}"
                    )

    def as_metadata(self) -> dict[str, Any]:
        """A JSON-friendly dict (for materialization metadata)."""
        return {k: ([list(p) for p in v] if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


# Per-script adjustments of the defaults, applied before the registry's per-language overrides.
SCRIPT_DEFAULTS: dict[str, dict[str, Any]] = {
    # Thai and Lao mark no sentence ends (a space separates sentences), so the line-punctuation rule is off;
    # words are approximated by syllables (core/words.py), about 3 characters long (2.85-3.33 over the clean
    # Thai sample), so the mean-length floor drops to 2 and the lines-per-word ceiling is halved (a syllable
    # is about half a word). Spaces separate phrases, not words, so the numbers of a date weigh more among the
    # whitespace tokens: clean Thai notices reach 0.18 non-alphabetic tokens, hence 0.3.
    "Thai": {
        "min_line_punct_ratio": None,
        "min_mean_word_length": 2.0,
        "max_lines_per_word": 0.15,
        "max_non_alpha_words_ratio": 0.3,
    },
    "Laoo": {
        "min_line_punct_ratio": None,
        "min_mean_word_length": 2.0,
        "max_lines_per_word": 0.15,
        "max_non_alpha_words_ratio": 0.3,
    },
    # Khmer and Myanmar syllables are similar; they have sentence marks (។ ။), so punctuation stays on.
    "Khmr": {"min_mean_word_length": 2.0, "max_lines_per_word": 0.15},
    "Mymr": {"min_mean_word_length": 2.0, "max_lines_per_word": 0.15},
    # Han characters are single-character tokens.
    "Hani": {"min_mean_word_length": None, "max_lines_per_word": 0.1},
    "Jpan": {"min_mean_word_length": None, "max_lines_per_word": 0.1},
}


def _field_names() -> list[str]:
    return [f.name for f in fields(QualityThresholds)]


def apply_overrides(
    base: QualityThresholds, overrides: Mapping[str, Any], source: str = "overrides"
) -> QualityThresholds:
    """Return ``base`` with ``overrides`` applied; an unknown key is a clear error naming the known ones."""
    known = set(_field_names())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"{source}: unknown quality setting(s) {unknown}. Known settings: {', '.join(sorted(known))}"
        )
    values = {}
    for key, value in overrides.items():
        if key in ("max_top_ngram_char_fraction", "max_dup_ngram_char_fraction") and value is not None:
            items = value.items() if isinstance(value, Mapping) else value
            value = tuple((int(n), float(frac)) for n, frac in items)
        values[key] = value
    return replace(base, **values)


def script_thresholds(script: str, base: QualityThresholds | None = None) -> QualityThresholds:
    """The defaults with the script's adjustments (what a calibration starts from)."""
    return apply_overrides(base or QualityThresholds(), SCRIPT_DEFAULTS.get(script, {}), "script")


def thresholds_for(
    lang: Language, base: QualityThresholds | None = None, calibrated: bool = True
) -> QualityThresholds:
    """The thresholds of one language: defaults, then the script's adjustments, then the language's
    calibration (``lang.calibration``, unless ``calibrated`` is False), then its manual ``lang.quality``."""
    thresholds = script_thresholds(lang.script, base)
    if calibrated and lang.calibration is not None:
        thresholds = apply_overrides(thresholds, lang.calibration.overrides(), f"calibration of language {lang.code!r}")
    return apply_overrides(thresholds, lang.quality, f"quality settings of language {lang.code!r}")


# --- Reasons ------------------------------------------------------------------------------------------

TOO_SHORT = "quality_too_short"
TOO_LONG = "quality_too_long"
BOILERPLATE = "quality_boilerplate_markers"
BULLET_LINES = "quality_bullet_lines"
ELLIPSIS_LINES = "quality_ellipsis_lines"
LINE_PUNCTUATION = "quality_line_punctuation"
SHORT_LINES = "quality_short_lines"
DUP_LINES = "quality_dup_line_fraction"
TOO_FEW_WORDS = "quality_too_few_words"
TOO_MANY_WORDS = "quality_too_many_words"
MEAN_WORD_LENGTH = "quality_mean_word_length"
SYMBOL_RATIO = "quality_symbol_ratio"
NON_ALPHA_WORDS = "quality_non_alpha_words"
LINES_PER_WORD = "quality_lines_per_word"
DUP_NGRAMS = "quality_dup_ngram_fraction"
CODE = "quality_code"

REASONS = (
    TOO_SHORT,
    TOO_LONG,
    BOILERPLATE,
    BULLET_LINES,
    ELLIPSIS_LINES,
    LINE_PUNCTUATION,
    SHORT_LINES,
    DUP_LINES,
    TOO_FEW_WORDS,
    TOO_MANY_WORDS,
    MEAN_WORD_LENGTH,
    SYMBOL_RATIO,
    NON_ALPHA_WORDS,
    LINES_PER_WORD,
    DUP_NGRAMS,
    CODE,
)

# --- Character classes --------------------------------------------------------------------------------

# Sentence-final marks of the registry's scripts and beyond: Latin, the Devanagari/Bengali danda (। ॥), the
# Urdu full stop (۔) and question mark (؟), CJK, Myanmar (။), Khmer (។ ៕), Ethiopic (። ፧), Armenian (։), and
# ";" (the Greek question mark, which NFC turns into a semicolon).
TERMINAL_PUNCTUATION = frozenset(".!?…‼⁇⁈⁉。．！？।॥۔؟။។៕።፧։;")
# Closing quotes and brackets after the full stop ("... dia." / (lihat di bawah.)) are looked through.
_CLOSERS = "\"'”’»›)]}」』）"
_BULLETS = (
    "•",
    "●",
    "○",
    "◦",
    "▪",
    "▫",
    "■",
    "□",
    "►",
    "▶",
    "➢",
    "➤",
    "✓",
    "✔",
    "‣",
    "⁃",
    "·",
    "»",
    "◄",
    "▸",
    "◆",
    "◇",
    "→",
    "⇒",
    "★",
    "-",
    "–",
    "—",
    "*",
)
_ELLIPSES = ("...", "…")
_MAX_NGRAM = 10  # the longest n-gram of Gopher's repetition rules

# Boilerplate markers, matched case-insensitively inside a line, in every registry language (and English,
# which web pages of every language carry). Phrases rather than single common words ("masuk" means both "log
# in" and "enter" in Indonesian), so that an ordinary sentence rarely matches. Two kinds:
#   * legal and consent notices (cookies, privacy policy, copyright) count on any line up to
#     ``boilerplate_line_chars`` characters: a paragraph that long is rarely a notice;
#   * interface strings (log in, password, read more, share) count only on lines of at most
#     ``interface_line_words`` words: a sentence about a password is content, a lone "Password" is a form.
BOILERPLATE_MARKERS: dict[str, str] = {
    "en": "©|lorem ipsum|javascript|cookie|copyright|privacy policy|terms of use|terms and conditions"
    "|all rights reserved",
    "fi": "eväste|tietosuojaseloste|tietosuojakäytäntö|käyttöehdot|kaikki oikeudet pidätetään",
    "id": "kebijakan privasi|syarat dan ketentuan|hak cipta",
    "th": "คุกกี้|นโยบายความเป็นส่วนตัว|สงวนลิขสิทธิ์|ลิขสิทธิ์|ข้อกำหนดการใช้งาน",
    "tr": "çerez|gizlilik politikası|kullanım koşulları|tüm hakları saklıdır",
    "vi": "chính sách bảo mật|điều khoản sử dụng|bản quyền",
    "bn": "কুকি|গোপনীয়তা নীতি|সর্বস্বত্ব সংরক্ষিত|কপিরাইট",
    "hi": "कुकी|गोपनीयता नीति|सर्वाधिकार सुरक्षित|कॉपीराइट|नियम और शर्तें",
    "sw": "vidakuzi|sera ya faragha|haki zote zimehifadhiwa|hakimiliki|masharti ya matumizi",
    "ta": "குக்கீ|தனியுரிமைக் கொள்கை|உரிமைகளும் பாதுகாக்கப்பட்ட|பதிப்புரிமை",
    "ur": "کوکیز|رازداری کی پالیسی|جملہ حقوق محفوظ|کاپی رائٹ",
}
INTERFACE_MARKERS: dict[str, str] = {
    # log-in and sign-up forms; consent buttons; related/tag/share blocks; footers
    "en": "login|log in|sign in|sign up|password|newsletter|subscribe|read more|share on|skip to content"
    "|accept all|reject all|manage preferences|cookie settings|related articles|related posts|most read"
    "|most popular|tags:|share:|load more|remember me|create an account|contact us|about us|follow us|sitemap"
    "|only necessary|necessary only|manage cookies|cookie preferences",
    "fi": "kirjaudu|salasana|tilaa uutiskirje|lue lisää|jaa facebookissa|rekisteröidy|hyväksy kaikki"
    "|hylkää kaikki|evästeasetukset|muokkaa asetuksia|aiheeseen liittyvät|luetuimmat|tunnisteet:|avainsanat:"
    "|jaa:|lataa lisää|muista minut|luo tili|ota yhteyttä|seuraa meitä"
    "|vain välttämättömät|lue myös|jaetuimmat",
    "id": "masuk / daftar|daftar sekarang|kata sandi|berlangganan|baca juga|bagikan:"
    "|tinggalkan komentar|halaman sebelumnya|halaman berikutnya|terima semua|tolak semua|pengaturan cookie"
    "|atur preferensi|berita terkait|artikel terkait|terpopuler|paling banyak dibaca|tag:|tags:"
    "|muat lebih banyak|ingat saya|buat akun|hubungi kami|tentang kami|ikuti kami"
    "|hanya yang diperlukan|baca selengkapnya|paling banyak dibagikan",
    "th": "เข้าสู่ระบบ|สมัครสมาชิก|อ่านเพิ่มเติม|รหัสผ่าน|แชร์|ยอมรับทั้งหมด|ปฏิเสธทั้งหมด|ตั้งค่าคุกกี้"
    "|ข่าวที่เกี่ยวข้อง|บทความที่เกี่ยวข้อง|ยอดนิยม|แท็ก:|โหลดเพิ่มเติม|จดจำฉัน|ติดต่อเรา|เกี่ยวกับเรา|ติดตามเรา"
    "|เฉพาะที่จำเป็น|อ่านต่อ|แชร์มากที่สุด",
    "tr": "giriş yap|üye ol|kayıt ol|abone ol|devamını oku|şifremi unuttum|paylaş|tümünü kabul et"
    "|tümünü reddet|çerez ayarları|tercihleri yönet|ilgili haberler|bunları da okuyun|en çok okunanlar"
    "|etiketler:|daha fazla yükle|beni hatırla|hesap oluştur|bize ulaşın|hakkımızda|bizi takip edin"
    "|yalnızca gerekli|yorum yap|en çok paylaşılanlar",
    "vi": "đăng nhập|quên mật khẩu|đọc thêm|xem thêm|chia sẻ|đăng ký nhận tin|chấp nhận tất cả"
    "|từ chối tất cả|cài đặt cookie|tin liên quan|bài viết liên quan|đọc nhiều nhất|từ khóa:|tags:"
    "|ghi nhớ đăng nhập|tạo tài khoản|liên hệ với chúng tôi|theo dõi chúng tôi"
    "|đồng ý tất cả|chỉ cần thiết|đọc tiếp|chia sẻ nhiều nhất",
    "bn": "লগইন|লগ ইন|সাইন ইন|আরও পড়ুন|শেয়ার করুন|পাসওয়ার্ড|সব গ্রহণ করুন|সব প্রত্যাখ্যান"
    "|প্রত্যাখ্যান করুন|কুকি সেটিংস|সম্পর্কিত খবর|আরও খবর|সর্বাধিক পঠিত|ট্যাগ:|শেয়ার:|আরও দেখুন"
    "|অ্যাকাউন্ট তৈরি করুন|যোগাযোগ করুন|আমাদের সম্পর্কে|আমাদের অনুসরণ করুন"
    "|শুধু প্রয়োজনীয়|পছন্দ ঠিক করুন|সর্বাধিক শেয়ার",
    "hi": "लॉग इन|लॉगिन|साइन इन|रजिस्टर करें|और पढ़ें|शेयर करें|पासवर्ड|सभी स्वीकार करें|सभी अस्वीकार करें"
    "|अस्वीकार करें|कुकी सेटिंग|संबंधित खबरें|संबंधित ख़बरें|ये भी पढ़ें|सबसे ज्यादा पढ़ी|टैग:|शेयर:"
    "|और देखें|खाता बनाएं|संपर्क करें|हमारे बारे में|हमें फॉलो करें"
    "|सब स्वीकार करें|केवल आवश्यक|अपनी पसंद चुनें|टिप्पणी करें|यह भी पढ़ें|सबसे ज्यादा शेयर",
    "sw": "jisajili|soma zaidi|nenosiri|ingia kwenye akaunti|kubali vyote|kataa vyote|mipangilio ya vidakuzi"
    "|habari zinazohusiana|habari nyingine|zilizosomwa zaidi|tagi:|lebo:|shiriki:|pakia zaidi|nikumbuke"
    "|fungua akaunti|wasiliana nasi|kuhusu sisi|tufuate"
    "|muhimu tu|badilisha mipangilio|soma pia|zilizoshirikiwa zaidi",
    "ta": "உள்நுழை|மேலும் படிக்க|கடவுச்சொல்|அனைத்தையும் ஏற்|நிராகரி|குக்கீ அமைப்புகள்|தொடர்புடைய செய்திகள்"
    "|அதிகம் படித்தவை|குறிச்சொற்கள்:|பகிர்:|மேலும் ஏற்று|கணக்கை உருவாக்கு|தொடர்புக்கு|எங்களைப் பற்றி"
    "|எங்களைப் பின்தொடர"
    "|அவசியமானவை மட்டும்|அமைப்புகளை மாற்று|இதையும் படிக்க|இதையும் படிங்க|அதிகம் பகிரப்பட்டவை|அதிகம் படிக்கப்பட்டவை",
    "ur": "لاگ ان|سائن ان|رجسٹر کریں|مزید پڑھیں|شیئر کریں|پاس ورڈ|سب قبول کریں|مسترد کریں|کوکی کی ترتیبات"
    "|متعلقہ خبریں|یہ بھی پڑھیں|سب سے زیادہ پڑھی|ٹیگز:|شیئر:|مزید لوڈ کریں|اکاؤنٹ بنائیں|رابطہ کریں"
    "|ہمارے بارے میں|ہمیں فالو کریں"
    "|صرف ضروری|ترتیبات تبدیل کریں|سب سے زیادہ شیئر",
}
# Separators of menu and footer lines ("Home | News | Sport", "Etusivu · Uutiset · Urheilu").
MENU_SEPARATORS = re.compile(r"\s+[|·•»›/]\s+|\s*\|\s*")
_MENU_ITEM_WORDS = 4
_MENU_ITEM_CHARS = 40


# A short line that is a count in brackets after a word or two: "Comments (0)", "Yorumlar (12)".
_COUNT_LINE = re.compile(r"^\S+(?: \S+){0,2} \(\d+\)")
# Vertical menus and button rows: this many consecutive menu items or more.
MENU_BLOCK_LINES = 3
_MENU_ITEM_MAX_CHARS = 25
_MENU_ITEM_MAX_WORDS = 3


def _is_menu_item(line: str) -> bool:
    """A line that could be a menu entry or a button: at most 3 words and 25 characters, no digit, not a
    sentence end, not a list item (a bullet)."""
    return (len(line) <= _MENU_ITEM_MAX_CHARS and len(line.split()) <= _MENU_ITEM_MAX_WORDS
            and not line.startswith(_BULLETS) and not _ends_with_terminal(line)
            and not any(c.isdigit() for c in line))


def menu_block_lines(lines: Sequence[str]) -> list[bool]:
    """Per line: whether it belongs to a run of ``MENU_BLOCK_LINES`` or more consecutive menu items (a
    navigation menu or a row of buttons written one per line)."""
    flags = [False] * len(lines)
    if sum(len(line) <= _MENU_ITEM_MAX_CHARS for line in lines) < MENU_BLOCK_LINES:
        return flags  # (most texts: not three short lines in all)
    start = 0
    for k in range(len(lines) + 1):
        if k < len(lines) and _is_menu_item(lines[k]):
            continue
        if k - start >= MENU_BLOCK_LINES:
            flags[start:k] = [True] * (k - start)
        start = k + 1
    return flags


def _may_hold_menu(text: str) -> bool:
    return "|" in text or any(sep in text for sep in ("·", "•", "»", "›", " / "))


def is_menu_line(line: str) -> bool:
    """Three or more short items (at most 4 words and 40 characters each) between menu separators, with no
    digit (a table row has numbers) and no sentence end: a navigation, category or footer link line."""
    if not _may_hold_menu(line):
        return False
    items = [item.strip() for item in MENU_SEPARATORS.split(line.strip().strip("|").strip())]
    items = [item for item in items if item]
    if len(items) < 3 or _ends_with_terminal(line):
        return False
    return all(len(item) <= _MENU_ITEM_CHARS and len(item.split()) <= _MENU_ITEM_WORDS
               and not any(c.isdigit() for c in item) for item in items)


def _marker_table(markers: Mapping[str, str]) -> tuple[tuple[str, bool], ...]:
    # (lower-cased marker, whether it must start a word). A marker that starts with a letter must start a word
    # ("baca juga" is not in "membaca juga"); it may end inside one ("cookie" finds "cookies"). Thai has no
    # spaces between words, so no boundary there.
    table = {
        (marker.lower(), marker[0].isalnum() and lang != "th")
        for lang, joined in markers.items()
        for marker in joined.split("|")
        if marker
    }
    return tuple(sorted(table))


_NOTICE_MARKERS = _marker_table(BOILERPLATE_MARKERS)
_INTERFACE_MARKERS = _marker_table(INTERFACE_MARKERS)


def _contains_marker(line: str, table: tuple[tuple[str, bool], ...]) -> bool:
    return _count_markers(line, table, 1) >= 1


def _count_markers(line: str, table: tuple[tuple[str, bool], ...], enough: int) -> int:
    """Occurrences of the markers in ``line`` (counting stops at ``enough``)."""
    # Plain substring searches (a hundred or so, in C) are much faster here than one regex alternation.
    low = line.lower()
    found = 0
    for marker, word_start in table:
        at = low.find(marker)
        while at >= 0:
            if not word_start or at == 0 or not (low[at - 1].isalnum() or low[at - 1] == "_"):
                found += 1
                if found >= enough:
                    return found
            at = low.find(marker, at + 1)
    return found


# A line longer than a notice still is one when it holds this many notice phrases (terms of use that name the
# terms, the privacy policy and the copyright in one paragraph).
DENSE_NOTICE_MARKERS = 3


def is_boilerplate_line(
    line: str, max_chars: int = 160, max_interface_words: int = 8, script: str | None = None
) -> bool:
    """Whether ``line`` is a notice (cookie, copyright ...) or an interface string (log in, password ...).

    See :data:`BOILERPLATE_MARKERS` and :data:`INTERFACE_MARKERS` for the two kinds and their length limits.
    """
    return _is_boilerplate_line(line, max_chars, max_interface_words, _NOTICE_MARKERS, _INTERFACE_MARKERS, script)


def _is_boilerplate_line(
    line: str,
    max_chars: int,
    max_interface_words: int,
    notice: tuple[tuple[str, bool], ...],
    interface: tuple[tuple[str, bool], ...],
    script: str | None = None,
) -> bool:
    if len(line) > max_chars:
        return bool(notice) and _count_markers(line, notice, DENSE_NOTICE_MARKERS) >= DENSE_NOTICE_MARKERS
    if notice and _contains_marker(line, notice):
        return True
    if is_menu_line(line):
        return True
    if not interface:
        return False
    if _line_words(line, script) <= max_interface_words:
        return _contains_marker(line, interface) or bool(_COUNT_LINE.match(line))
    # A label with a colon at the start of a line ("Tags: ...", "Share: ...") marks it whatever its words.
    low = line.lower()
    return any(marker.endswith(":") and low.startswith(marker) for marker, _ in interface)


def _line_words(line: str, script: str | None) -> int:
    """The words of a line in the rules' units: whitespace tokens, or syllables in the scripts written without
    spaces between words (whose whitespace separates phrases)."""
    if script in SCRIPTIO_CONTINUA:
        return len(split_words(line, script))
    return len(line.split())


# A whitespace-separated token with no letter in it: digits, underscores, punctuation, symbols only.
_NON_ALPHA_TOKEN = re.compile(r"(?<!\S)(?:[\d_]|[^\w\s])+(?!\S)")
_LOREM = re.compile(r"lorem ipsum", re.IGNORECASE)


# Code punctuation: rare in prose of any script, a tenth or more of the characters of source code and markup.
_CODE_CHARS = re.compile(r"[{}\[\]<>=;$\\|`]")


_CODE_TABLE = np.zeros(0x110000, dtype=bool)
_CODE_TABLE[[ord(c) for c in "{}[]<>=;$\\|`"]] = True
_SPACES = re.compile(r"\s")


def _code_chars_ratio(text: str) -> float:
    """The share of the non-space characters of ``text`` that are code punctuation."""
    solid = len(text) - len(_SPACES.findall(text))
    return len(_CODE_CHARS.findall(text)) / solid if solid > 0 else 0.0


def _char_share(lines: list[str], predicate) -> float:
    """The share of the lines' characters in the lines ``predicate`` holds for."""
    total = sum(map(len, lines))
    return sum(len(line) for line in lines if predicate(line)) / total if total else 0.0


# A sentence end inside a line (a full stop, question or exclamation mark, danda, Urdu full stop ... followed by
# a space), not an ellipsis: a paragraph of sentences whose last one has no full stop (a forum post ending in
# a smiley or a name) is still prose.
_SENTENCE_INSIDE = re.compile(r"(?<![.…])[.!?।॥۔؟。！？](?=\s+\S)")


def _has_sentence_end(line: str) -> bool:
    """Whether a line ends with terminal punctuation or, unless it is a list item (a headline in a list of
    links asks "...? – read"), holds a sentence end followed by more text."""
    return _ends_with_terminal(line) or (not line.startswith(_BULLETS) and bool(_SENTENCE_INSIDE.search(line)))


def _ends_with_terminal(line: str) -> bool:
    stripped = line.rstrip().rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in TERMINAL_PUNCTUATION


def ngram_fractions(
    ids: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, max_n: int = _MAX_NGRAM
) -> tuple[np.ndarray, np.ndarray]:
    """Gopher's n-gram repetition measures of many texts at once, for n = 2 .. ``max_n``.

    ``ids`` identify the words (equal words, equal ids), ``lengths`` are their lengths in characters, and text
    ``d`` has the words ``offsets[d]`` to ``offsets[d + 1]``. Returns ``(top, dup)``, arrays of shape
    ``(texts, max_n + 1)`` (column ``n`` for n-grams): ``top`` is the characters of the most frequent n-gram
    (the first to appear among equally frequent ones) times its count, over all word characters; ``dup`` is
    the share of word characters inside repeats of an earlier n-gram, each word counted once. Both are 0 where
    no n-gram repeats.

    An n-gram can repeat only where its (n-1)-gram prefix repeats, so each size looks only at the positions
    that repeated at the size before (the Gopher cascade), all texts at once: n-grams are numbered by
    ``np.unique`` over (number of the (n-1)-gram, id of the next word) pairs, which are exact integers, so
    equal n-grams of one text always share a number and different ones never do.
    """
    ids = np.asarray(ids, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    texts = len(offsets) - 1
    top = np.zeros((texts, max_n + 1))
    dup = np.zeros((texts, max_n + 1))
    words = len(ids)
    if words == 0 or texts == 0:
        return top, dup
    counts = np.diff(offsets)
    doc_of = np.repeat(np.arange(texts, dtype=np.int64), counts)
    end_of = offsets[1:][doc_of]  # one past the last word of each word's text
    chars = np.concatenate(([0], np.cumsum(lengths)))  # chars[j] - chars[i]: characters of words i..j-1
    total = chars[offsets[1:]] - chars[offsets[:-1]]
    # 1-grams numbered per text (the same word in two texts gets two numbers).
    vocabulary = int(ids.max()) + 1
    if texts * vocabulary < 2**31:
        grams = doc_of * vocabulary + ids
    else:
        grams = np.unique(doc_of * vocabulary + ids, return_inverse=True)[1].astype(np.int64)
    unigrams = grams
    positions = np.arange(words, dtype=np.int64)
    for n in range(2, max_n + 1):
        inside = positions + n <= end_of[positions]
        positions, grams = positions[inside], grams[inside]
        if positions.size == 0:
            break
        key = grams * (int(unigrams.max()) + 1) + unigrams[positions + n - 1]  # < 2**62: exact
        _, first, grams, count = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
        grams = grams.astype(np.int64)
        per_position = count[grams]
        docs = doc_of[positions]
        starts = np.flatnonzero(np.diff(docs, prepend=-1))  # positions are in text order
        best = np.maximum.reduceat(per_position, starts)
        repeating = best >= 2
        if not repeating.any():
            break
        # The first position whose n-gram has its text's highest count: the n-gram Counter.most_common picks.
        is_best = per_position == np.repeat(best, np.diff(np.append(starts, len(positions))))
        first_best = np.maximum.reduceat(
            np.where(is_best, -np.arange(len(positions)), -len(positions)), starts
        )
        at = positions[-first_best]
        rows = docs[starts]
        top[rows[repeating], n] = (
            (chars[at + n] - chars[at]) * best / np.maximum(total[rows], 1)
        )[repeating]
        # Characters covered by the later occurrences of repeated n-grams.
        repeated = per_position > 1
        later = repeated & (first[grams] != np.arange(len(positions)))
        begin = positions[later]
        cover = np.bincount(begin, minlength=words + 1) - np.bincount(begin + n, minlength=words + 1)
        covered = np.cumsum(cover[:-1]) > 0
        covered_chars = np.bincount(doc_of, weights=lengths * covered, minlength=texts)
        dup[rows[repeating], n] = (covered_chars[rows] / np.maximum(total[rows], 1))[repeating]
        positions, grams = positions[repeated], grams[repeated]
    return top, dup


class _Measured:
    """Lazily measured properties of one text, shared by the checks and the signals.

    ``markers``: the (notice, interface) marker tables to look for, when the caller knows that only these
    can occur in the text (:func:`assess_quality_batch`); every marker otherwise.
    """

    def __init__(
        self,
        text: str,
        script: str | None,
        markers: tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]] | None = None,
    ) -> None:
        self.text, self.script = text, script
        self.markers = markers if markers is not None else (_NOTICE_MARKERS, _INTERFACE_MARKERS)
        self.menus = markers is None or _may_hold_menu(text)  # whether a menu line is possible

    @cached_property
    def lines(self) -> list[str]:
        return [line for line in map(str.strip, self.text.splitlines()) if line]

    @cached_property
    def words(self) -> list[str]:
        return split_words(self.text, self.script)

    @cached_property
    def word_chars(self) -> int:
        return sum(map(len, self.words))

    def line_ratio(self, predicate) -> float:
        return sum(1 for line in self.lines if predicate(line)) / len(self.lines) if self.lines else 0.0

    def line_counts(self, t: QualityThresholds) -> tuple[int, int, int, int]:
        """Lines starting with a bullet and lines ending with an ellipsis (counts), and the characters of the
        lines ending a sentence and of the short lines."""
        bullets = ellipses = terminal = short = 0
        limit = t.short_line_chars
        for line in self.lines:  # stripped already: _ends_with_terminal's rstrip() is inlined away
            bullets += line.startswith(_BULLETS)
            ellipses += line.endswith(_ELLIPSES)
            end = line.rstrip(_CLOSERS)
            if (end and end[-1] in TERMINAL_PUNCTUATION) or (
                    not line.startswith(_BULLETS) and _SENTENCE_INSIDE.search(line)):
                terminal += len(line)
            if len(line) <= limit:
                short += len(line)
        return bullets, ellipses, terminal, short

    @cached_property
    def menu_blocks(self) -> list[bool]:
        return menu_block_lines(self.lines)

    @cached_property
    def line_chars(self) -> int:
        return sum(map(len, self.lines))

    @cached_property
    def code_chars_ratio(self) -> float:
        return _code_chars_ratio(self.text)

    def boilerplate_lines_ratio(self, t: QualityThresholds) -> float:
        return self.boilerplate_ratios(t)[0]

    def boilerplate_ratios(self, t: QualityThresholds) -> tuple[float, float]:
        """The share of lines that are boilerplate, and the share of the lines' characters they hold."""
        notice, interface = self.markers
        blocks = self.menu_blocks
        if not notice and not interface and not self.menus and not any(blocks):
            return 0.0, 0.0
        lines = chars = 0
        for line, in_block in zip(self.lines, blocks):
            if in_block or _is_boilerplate_line(line, t.boilerplate_line_chars, t.interface_line_words, notice,
                                                interface, self.script):
                lines += 1
                chars += len(line)
        total = sum(map(len, self.lines))
        return (lines / len(self.lines) if self.lines else 0.0, chars / total if total else 0.0)

    @cached_property
    def dup_lines(self) -> tuple[float, float]:
        seen: set[str] = set()
        dup_lines = dup_chars = 0
        for line in self.lines:
            if line in seen:
                dup_lines += 1
                dup_chars += len(line)
            seen.add(line)
        total_chars = sum(map(len, self.lines))
        return (
            dup_lines / len(self.lines) if self.lines else 0.0,
            dup_chars / total_chars if total_chars else 0.0,
        )

    @property
    def symbols(self) -> int:
        return self.text.count("#") + sum(self.text.count(e) for e in _ELLIPSES)

    @cached_property
    def mean_word_length(self) -> float:
        return _mean_word_length(len(self.words), self.word_chars)

    @cached_property
    def symbol_word_ratio(self) -> float:
        return _symbol_word_ratio(self.symbols, len(self.words))

    @cached_property
    def non_alpha_words_ratio(self) -> float:
        """The characters of the whitespace tokens without a letter, over the characters of all tokens."""
        chars = sum(map(len, self.text.split()))
        return sum(map(len, _NON_ALPHA_TOKEN.findall(self.text))) / chars if chars else 0.0

    @cached_property
    def lines_per_word(self) -> float:
        return _lines_per_word(len(self.lines), len(self.words))

    @cached_property
    def _ngram_fractions(self) -> tuple[np.ndarray, np.ndarray]:
        index: dict[str, int] = {}
        ids = np.array([index.setdefault(w, len(index)) for w in self.words], dtype=np.int64)
        lengths = np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words))
        top, dup = ngram_fractions(ids, lengths, np.array([0, len(ids)]))
        return top[0], dup[0]

    def top_ngram_char_fraction(self, n: int) -> float:
        """Characters of the most frequent n-gram times its count, over all word characters (Gopher)."""
        return float(self._ngram_fractions[0][n]) if 2 <= n <= _MAX_NGRAM else 0.0

    def dup_ngram_char_fraction(self, n: int) -> float:
        """Fraction of word characters inside repeats of an earlier n-gram (each word counted once)."""
        return float(self._ngram_fractions[1][n]) if 2 <= n <= _MAX_NGRAM else 0.0


def _mean_word_length(words: int, word_chars: int) -> float:
    return word_chars / words if words else 0.0


def _symbol_word_ratio(symbols: int, words: int) -> float:
    return symbols / words if words else float(symbols > 0)


def _lines_per_word(lines: int, words: int) -> float:
    return lines / words if words else float(bool(lines))


@dataclass(frozen=True)
class QualityVerdict:
    """The first failing rule (``None``: passed) and the word count, when the word rules were reached."""

    reason: str | None
    words: int | None


def assess_quality(text: str, script: str | None, thresholds: QualityThresholds) -> QualityVerdict:
    """Like :func:`check_quality`, also returning the word count it measured on the way (no second pass)."""
    m = _Measured(text, script)
    reason = _first_failure(m, thresholds)
    return QualityVerdict(reason, len(m.words) if "words" in m.__dict__ else None)


def check_quality(text: str, script: str | None, thresholds: QualityThresholds) -> str | None:
    """The first quality rule ``text`` fails, as a ``quality_...`` reason, or ``None`` if it passes them all.

    Cheap rules run first (length, then line rules, then word rules, then n-gram repetition).
    """
    return _first_failure(_Measured(text, script), thresholds)


def _first_failure(m: _Measured, t: QualityThresholds) -> str | None:
    reason = _line_failure(m, t)
    if reason is not None:
        return reason
    reason = _word_failure(
        len(m.words), m.word_chars, m.symbols, lambda: m.non_alpha_words_ratio, len(m.lines), t
    )
    if reason is not None:
        return reason
    return _ngram_failure(m._ngram_fractions[0], m._ngram_fractions[1], t)


def _line_failure(m: _Measured, t: QualityThresholds, maybe_lorem: bool = True) -> str | None:
    """The rules before the word rules: length, boilerplate, and the line rules (in this order)."""
    n_chars = len(m.text)
    if t.min_chars is not None and n_chars < t.min_chars:
        return TOO_SHORT
    if t.max_chars is not None and n_chars > t.max_chars:
        return TOO_LONG
    if t.reject_lorem_ipsum and maybe_lorem and _LOREM.search(m.text):
        return BOILERPLATE
    if t.max_boilerplate_lines_ratio is not None:
        lines_ratio, chars_ratio = m.boilerplate_ratios(t)
        if lines_ratio > t.max_boilerplate_lines_ratio and (
            t.max_boilerplate_chars_ratio is None or chars_ratio > t.max_boilerplate_chars_ratio
        ):
            return BOILERPLATE
    lines = len(m.lines)
    bullets, ellipses, terminal, short = m.line_counts(t) if lines else (0, 0, 0, 0)
    ratio = (lambda count: count / lines) if lines else (lambda count: 0.0)
    chars = m.line_chars if lines else 0
    weight = (lambda count: count / chars) if chars else (lambda count: 0.0)
    if t.max_code_chars_ratio is not None and m.code_chars_ratio > t.max_code_chars_ratio:
        return CODE
    if t.max_bullet_lines_ratio is not None and ratio(bullets) > t.max_bullet_lines_ratio:
        return BULLET_LINES
    if t.max_ellipsis_lines_ratio is not None and ratio(ellipses) > t.max_ellipsis_lines_ratio:
        return ELLIPSIS_LINES
    if t.min_line_punct_ratio is not None and weight(terminal) < t.min_line_punct_ratio:
        return LINE_PUNCTUATION
    if t.max_short_lines_ratio is not None and weight(short) > t.max_short_lines_ratio:
        return SHORT_LINES
    dup_line_fraction, dup_line_char_fraction = m.dup_lines
    if (t.max_dup_line_fraction is not None and dup_line_fraction > t.max_dup_line_fraction) or (
        t.max_dup_line_char_fraction is not None and dup_line_char_fraction > t.max_dup_line_char_fraction
    ):
        return DUP_LINES
    return None


def _word_failure(
    n_words: int, word_chars: int, symbols: int, non_alpha_ratio, n_lines: int, t: QualityThresholds
) -> str | None:
    """The word rules, from counts (``non_alpha_ratio`` is called only when its rule is reached)."""
    if t.min_words is not None and n_words < t.min_words:
        return TOO_FEW_WORDS
    if t.max_words is not None and n_words > t.max_words:
        return TOO_MANY_WORDS
    mean = _mean_word_length(n_words, word_chars)
    if (t.min_mean_word_length is not None and mean < t.min_mean_word_length) or (
        t.max_mean_word_length is not None and mean > t.max_mean_word_length
    ):
        return MEAN_WORD_LENGTH
    if t.max_symbol_word_ratio is not None and _symbol_word_ratio(symbols, n_words) > t.max_symbol_word_ratio:
        return SYMBOL_RATIO
    if t.max_non_alpha_words_ratio is not None and non_alpha_ratio() > t.max_non_alpha_words_ratio:
        return NON_ALPHA_WORDS
    if t.max_lines_per_word is not None and _lines_per_word(n_lines, n_words) > t.max_lines_per_word:
        return LINES_PER_WORD
    return None


def _ngram_failure(top: np.ndarray, dup: np.ndarray, t: QualityThresholds) -> str | None:
    """Gopher's repetition rules, from one text's rows of :func:`ngram_fractions`."""
    for n, limit in t.max_top_ngram_char_fraction or ():
        if (top[n] if 2 <= n <= _MAX_NGRAM else 0.0) > limit:
            return DUP_NGRAMS
    for n, limit in t.max_dup_ngram_char_fraction or ():
        if (dup[n] if 2 <= n <= _MAX_NGRAM else 0.0) > limit:
            return DUP_NGRAMS
    return None


# --- Many texts at once ---------------------------------------------------------------------------------


_KEY_BITS = 16  # a 64k-entry table of marker-key hashes: few false hits, fits the CPU cache
_KEY_WIDTH = 4  # characters of a marker key: four UTF-16 units, one uint64
_KEY_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def _windows(units: np.ndarray) -> np.ndarray:
    """Every four consecutive uint16 values of ``units`` as one uint64 (a strided view: no copy)."""
    units = np.ascontiguousarray(units, dtype="<u2")
    count = len(units) - _KEY_WIDTH + 1
    if count <= 0:
        return np.empty(0, dtype="<u8")
    return np.ndarray((count,), dtype="<u8", buffer=units, offset=0, strides=(2,))


def _key_slots(windows: np.ndarray) -> np.ndarray:
    return (windows * _KEY_MULTIPLIER) >> np.uint64(64 - _KEY_BITS)


def _slot(phrase: str) -> int:
    return int(_key_slots(_windows(np.array([ord(c) for c in phrase], dtype="<u2")))[0])


class _MarkerIndex(NamedTuple):
    """The markers (notice, then interface, then "lorem ipsum") and how to find them in a batch."""

    phrases: list[str]
    keys: np.ndarray  # bool per slot of a marker's first (or last) four characters
    by_first: dict[int, list[tuple[int, int]]]  # first-key slot -> (marker, last-key slot)
    single: dict[int, int]  # code point -> one-character marker
    unkeyed: list[int]  # markers too short to key (or beyond U+FFFF): always candidates
    lower: np.ndarray  # uint16 per code point: the first character of its lower case (0xFFFF beyond)


@lru_cache(maxsize=1)
def _marker_index() -> _MarkerIndex:
    """Each marker of four or more characters is keyed by its first and its last four characters: a text can
    hold it only if it holds both. "lorem ipsum" is searched case-insensitively by _LOREM, where "s" also
    matches "ſ" and "i" also "ı": its keys stay within "lorem", whose letters have no such partners."""
    phrases = [m for m, _ in _NOTICE_MARKERS] + [m for m, _ in _INTERFACE_MARKERS] + ["lorem ipsum"]
    keys = np.zeros(1 << _KEY_BITS, dtype=bool)
    by_first: dict[int, list[tuple[int, int]]] = {}
    single: dict[int, int] = {}
    unkeyed: list[int] = []
    for i, phrase in enumerate(phrases):
        if len(phrase) == 1:
            single[ord(phrase)] = i
        elif len(phrase) < _KEY_WIDTH or max(map(ord, phrase)) >= 0xFFFF:
            unkeyed.append(i)
        else:
            tail = phrase[1 : _KEY_WIDTH + 1] if phrase == "lorem ipsum" else phrase[-_KEY_WIDTH:]
            first, last = _slot(phrase[:_KEY_WIDTH]), _slot(tail)
            keys[first] = keys[last] = True
            by_first.setdefault(first, []).append((i, last))
    lower = np.minimum(char_tables().lower, 0xFFFF).astype("<u2")
    return _MarkerIndex(phrases, keys, by_first, single, unkeyed, lower)


def _marker_candidates(batch: TextBatch) -> list[set[int]]:
    """Per text, the markers whose first and last four characters occur in its lower-cased text.

    A superset of the markers in the text, so every marker that :func:`is_boilerplate_line` can find in one
    of its lines is there. A character's lower case here is the first character of ``str.lower()`` (no
    marker holds the combining dot above that follows "i" in the lower case of "İ"), and no marker holds a
    sigma, the one character whose lower case depends on its neighbours. Four lower-cased characters are
    read as one uint64 and hashed: a few passes over the batch.
    """
    index = _marker_index()
    points = batch.code_points
    out: list[set[int]] = [set(index.unkeyed) for _ in batch.texts]
    slots = _key_slots(_windows(index.lower[points]))
    at = np.flatnonzero(index.keys[slots])
    if at.size:
        pairs = np.unique(batch.texts_at(at).astype(np.int64) << np.int64(_KEY_BITS) | slots[at].astype(np.int64))
        present: dict[int, set[int]] = {}
        for doc, slot in zip((pairs >> _KEY_BITS).tolist(), (pairs & ((1 << _KEY_BITS) - 1)).tolist()):
            present.setdefault(doc, set()).add(slot)
        for doc, seen in present.items():
            for slot in seen:
                for i, last in index.by_first.get(slot, ()):
                    if last in seen:
                        out[doc].add(i)
    for cp, i in index.single.items():
        for doc in np.unique(batch.texts_at(np.flatnonzero(points == cp))).tolist():
            out[doc].add(i)
    return out


def assess_quality_batch(
    texts: Sequence[str],
    script: str | None,
    thresholds: QualityThresholds,
    batch: TextBatch | None = None,
    ids: np.ndarray | None = None,
) -> list[QualityVerdict]:
    """:func:`assess_quality` of many texts at once, with exactly the same verdicts.

    ``batch`` (the texts split into words) and ``ids`` (a number per word of ``batch.words``, equal for equal
    words: :class:`Vocabulary`) can be shared with the MinHash signatures of the same texts. The word and
    n-gram rules run as array operations over the whole batch; the line rules run per text, looking only
    for the boilerplate markers that a vectorised search found.
    """
    split_words("", script)  # a malformed script code is the usual clear error
    t = thresholds
    batch = batch if batch is not None else TextBatch(texts)
    texts = batch.texts
    n_words = np.diff(batch.offsets)
    lengths = batch.word_lengths
    word_chars = np.concatenate(([0], np.cumsum(lengths)))[batch.offsets]
    word_chars = np.diff(word_chars)
    marker_index = _marker_index()
    candidates = _marker_candidates(batch)
    notice_count = len(_NOTICE_MARKERS)
    lorem_index = len(marker_index.phrases) - 1
    non_alpha = _non_alpha_ratios(batch)
    code_ratios = _code_ratios(batch).tolist()
    verdicts: list[QualityVerdict | None] = [None] * len(texts)
    pending: list[int] = []
    phrases = marker_index.phrases
    no_markers: tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]] = ((), ())
    for i, text in enumerate(texts):
        found = candidates[i]
        occurrences = 0
        if found:  # the markers really in the lower-cased text (one search each, not one per line)
            low = text.lower()
            found = {k for k in found if phrases[k] in low}
            occurrences = sum(low.count(phrases[k]) for k in found if k != lorem_index)
        m = _Measured(text, script, no_markers)
        m.__dict__["code_chars_ratio"] = code_ratios[i]  # the cached property, measured for the batch
        limit = t.max_boilerplate_lines_ratio
        # Each boilerplate line holds an occurrence of a marker, or is a menu line or in a menu block (which
        # need no marker): when the occurrences are too few to reach the limit and neither can occur, no line
        # needs looking at for markers.
        if occurrences and limit is not None and (
                occurrences > limit * len(m.lines) or m.menus or any(m.menu_blocks)):
            m.markers = (
                tuple(_NOTICE_MARKERS[k] for k in sorted(found) if k < notice_count),
                tuple(_INTERFACE_MARKERS[k - notice_count] for k in sorted(found) if notice_count <= k < lorem_index),
            )
        reason = _line_failure(m, t, maybe_lorem=lorem_index in found)
        if reason is not None:
            verdicts[i] = QualityVerdict(reason, None)
            continue
        words = int(n_words[i])
        reason = _word_failure(
            words, int(word_chars[i]), m.symbols, lambda: float(non_alpha[i]), len(m.lines), t
        )
        if reason is not None:
            verdicts[i] = QualityVerdict(reason, words)
        else:
            pending.append(i)
    if pending and (t.max_top_ngram_char_fraction or t.max_dup_ngram_char_fraction):
        rows = np.array(pending)
        chosen = np.zeros(len(texts), dtype=bool)
        chosen[rows] = True
        take = np.repeat(chosen, n_words)  # the words of the pending texts
        if ids is None:
            words_list = batch.words
            ids = np.zeros(len(words_list), dtype=np.int64)
            ids[take] = Vocabulary().ids([w for w, keep in zip(words_list, take.tolist()) if keep])
        offsets = np.concatenate(([0], np.cumsum(n_words[rows])))
        top, dup = ngram_fractions(ids[take], lengths[take], offsets)
        # _ngram_failure for every pending text at once: any rule over its limit (columns outside 2..10 are 0).
        failing = np.zeros(len(pending), dtype=bool)
        for fractions, rules in ((top, t.max_top_ngram_char_fraction), (dup, t.max_dup_ngram_char_fraction)):
            for n, limit in rules or ():
                if 2 <= n <= _MAX_NGRAM:
                    failing |= fractions[:, n] > limit
                else:
                    failing |= 0.0 > limit
        for i, fails in zip(pending, failing.tolist()):
            verdicts[i] = QualityVerdict(DUP_NGRAMS if fails else None, int(n_words[i]))
    else:
        for i in pending:
            verdicts[i] = QualityVerdict(None, int(n_words[i]))
    return verdicts  # type: ignore[return-value]


def _non_alpha_ratios(batch: TextBatch) -> np.ndarray:
    """Per text: the characters of the whitespace-separated tokens without a letter, over the characters of
    all tokens (``_NON_ALPHA_TOKEN``).

    The regex matches a whole token made only of digits, underscores and non-word characters: a token is
    counted unless it holds a character of ``\\w`` that is neither a digit nor ``_`` (the ALPHA bit).
    """
    flags = batch.flags
    solid = (flags & SPACE) == 0
    starts = np.flatnonzero(np.diff(solid.view(np.int8), prepend=np.int8(0)) == 1)
    if starts.size == 0:
        return np.zeros(len(batch.texts))
    # From a token's start to the next token's start: the token, then whitespace (never ALPHA, never solid).
    has_alpha = np.maximum.reduceat(flags & ALPHA, starts)
    lengths = np.add.reduceat(solid.astype(np.int64), starts)
    doc = np.searchsorted(batch.char_starts, starts, side="right") - 1
    chars = np.bincount(doc, weights=lengths, minlength=len(batch.texts))
    bare = np.bincount(doc, weights=lengths * (has_alpha == 0), minlength=len(batch.texts))
    return np.divide(bare, chars, out=np.zeros(len(chars)), where=chars > 0)


def _code_ratios(batch: TextBatch) -> np.ndarray:
    """Per text: :func:`_code_chars_ratio`, for the whole batch at once."""
    points = batch.code_points
    code = batch.per_text(_CODE_TABLE[points])
    solid = batch.per_text((batch.flags & SPACE) == 0)
    return np.divide(code, solid, out=np.zeros(len(solid)), where=solid > 0)


def quality_signals(
    text: str, script: str | None, thresholds: QualityThresholds | None = None
) -> dict[str, float | int]:
    """Every measured value the rules look at (for the audit trail and for tuning thresholds)."""
    t = thresholds or QualityThresholds()
    m = _Measured(text, script)
    dup_line_fraction, dup_line_char_fraction = m.dup_lines
    signals: dict[str, float | int] = {
        "chars": len(text),
        "words": len(m.words),
        "lines": len(m.lines),
        "mean_word_length": round(m.mean_word_length, 4),
        "symbol_word_ratio": round(m.symbol_word_ratio, 4),
        "non_alpha_words_ratio": round(m.non_alpha_words_ratio, 4),
        "bullet_lines_ratio": round(m.line_ratio(lambda s: s.startswith(_BULLETS)), 4),
        "ellipsis_lines_ratio": round(m.line_ratio(lambda s: s.endswith(_ELLIPSES)), 4),
        "line_punct_ratio": round(_char_share(m.lines, _has_sentence_end), 4),
        "short_lines_ratio": round(_char_share(m.lines, lambda s: len(s) <= t.short_line_chars), 4),
        "code_chars_ratio": round(m.code_chars_ratio, 4),
        "lines_per_word": round(m.lines_per_word, 4),
        "boilerplate_lines_ratio": round(m.boilerplate_lines_ratio(t), 4),
        "has_lorem_ipsum": int(bool(_LOREM.search(text))),
        "dup_line_fraction": round(dup_line_fraction, 4),
        "dup_line_char_fraction": round(dup_line_char_fraction, 4),
    }
    for n in (2, 3, 4):
        signals[f"top_{n}gram_char_fraction"] = round(m.top_ngram_char_fraction(n), 4)
    for n in range(5, 11):
        signals[f"dup_{n}gram_char_fraction"] = round(m.dup_ngram_char_fraction(n), 4)
    return signals
