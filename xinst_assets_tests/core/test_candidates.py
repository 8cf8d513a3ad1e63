from xinst_assets.core.candidates import candidate_rejections, clean_instruction, copies_text
from xinst_assets.core.lid import LanguageIdentifier
from xinst_assets.languages import load_registry

TEXT = ("Serikali ya mkoa imetangaza mpango mpya wa kuboresha barabara za vijijini ili wakulima waweze "
        "kusafirisha mazao yao kwa urahisi zaidi msimu huu wa mavuno.")


def test_generations_are_cut_at_the_next_section_and_whitespace_is_collapsed():
    assert clean_instruction("  Write a news report\n about roads.\n\n### Text:\nmore") == "Write a news report about roads."
    assert clean_instruction("Summarize the notice.### Response: x") == "Summarize the notice."


def test_each_bad_instruction_gets_its_reason_and_a_good_one_is_kept():
    identifier = LanguageIdentifier(registry=load_registry())
    instructions = [
        "",
        "Write.",
        "Write a short news report about a regional government plan to improve rural roads for farmers.",
        "mpango mpya wa kuboresha barabara za vijijini ili wakulima waweze kusafirisha mazao yao",
        "Andika habari fupi kuhusu mpango wa serikali wa kuboresha barabara za vijijini kwa wakulima.",
        "x " * 400,
    ]
    reasons = candidate_rejections(instructions, [TEXT] * 6, ["stop"] * 5 + ["length"], identifier)
    assert reasons == [
        "candidate_empty", "candidate_too_short", None, "candidate_copies_text",
        "candidate_not_english:sw", "candidate_too_long",
    ]


def test_copying_is_detected_by_shared_word_ngrams_not_by_topic():
    assert copies_text("Please repeat: serikali ya mkoa imetangaza mpango mpya wa kuboresha barabara", TEXT, 8)
    assert not copies_text("Write about the regional road plan for farmers and harvest season.", TEXT, 8)
