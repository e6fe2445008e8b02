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


def test_locate_finds_a_link_inside_a_longer_line():
    from edge_vla.perception.match import locate

    part = locate("New on our platform? Create an account", "Tap Create an account")
    assert part is not None and 0.5 < part[0] < part[1] <= 1.0  # the end of the line
    assert locate("Save", "Click Save") is None  # the whole line: its centre is right
    assert locate("Save changes", "Click the Save changes button") is None
    assert locate("Paid 7368 of 9000", "Show 7369") is None  # digits are matched exactly
    assert locate("Welcome back", "Click Create an account") is None
