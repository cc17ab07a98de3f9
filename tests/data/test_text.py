from dllab.data.text import CHARACTERS, normalize


def test_normalize_folds_punctuation_onto_the_characters():
    assert normalize("The LORD said: Go; (now)!") == "the lord said, go, now."
    assert normalize('  it\'s  "fine" ') == "its fine"
    assert all(ch in CHARACTERS for ch in normalize("Ünïcode — 123 ok?"))


def test_normalize_collapses_spaces_and_repeated_punctuation():
    assert normalize("a\tb\n\nc  ,, d?!") == "a b c, d?"
