"""Row filters and duplicate detection used by `fmloop data clean` / `inspect`."""

from fmloop.data.cleaning import NearDuplicates, exact_key, fold, garbled, normalize_text

REVIEW = (
    "I went to see this film on a rainy afternoon with my sister and we both left the cinema "
    "talking about the ending for hours because the last scene changes everything before it"
)


def test_normalize_repairs_mojibake_html_and_spaces():
    assert normalize_text("The Mona Lisa doesnâ€™t have eyebrows.") == "The Mona Lisa doesn't have eyebrows."
    assert (
        normalize_text("Great film.<br /><br />Go see it &amp; enjoy  <i>it</i>!")
        == "Great film. Go see it & enjoy it !"
    )
    assert garbled("doesnâ€™t") and not garbled("doesn't")


def test_duplicate_keys_ignore_case_and_punctuation_only():
    assert exact_key("A fine film!") == exact_key("a fine film") != exact_key("a fine films")
    assert fold("Café, naïve!") == "cafe naive"


def test_near_duplicates_survive_small_edits_but_not_different_text():
    index = NearDuplicates(threshold=0.6)
    index.add("train row 1", index.sketch(REVIEW))
    words = REVIEW.split()
    edited = " ".join(words[:10] + words[11:]).upper() + "!!"  # a word dropped, case, punctuation
    assert index.match(index.sketch(edited)) == "train row 1"
    other = "a completely different review about the music and the actors who sing in every scene of it"
    assert index.match(index.sketch(other)) is None
