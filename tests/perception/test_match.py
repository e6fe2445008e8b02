from edge_vla.perception.match import best_matches, norm, words


def test_case_space_and_quotes_do_not_matter_digits_do():
    instr = "Scroll to 'Invoice #7368' and click it"
    (s1, start, n), (s2, *_), (s3, *_) = best_matches(["INVOICE #7368", "Invoice #7369", "invoice#7368"], instr)
    assert s1 == 1.0 and words(instr)[start:start + n] == ["Invoice", "#7368"]
    assert s2 == 0.0  # one digit off is another item
    assert s3 == 1.0


def test_one_misread_letter_still_matches_but_another_word_does_not():
    (ok, *_), (other, *_) = best_matches(["Reglster", "Cancel"], "Wait until the error is gone, then click Register")
    assert ok >= 0.8 > other


def test_norm_keeps_letters_digits_and_symbols_people_type():
    assert norm("Save & close!") == "save&close"
    assert best_matches([], "Click Save") == []
    assert best_matches([""], "Click Save")[0][0] == 0.0
