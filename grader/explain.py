"""What `python verifier.py RESPONSE GOLD` shows above its verdict: each answer verify() compared
with the gold, in verify's order, and why there was none.

verify(response, gold, lenient) tries, until one equals the gold:
  1. the marked answer (extract_answer: the last box, `####`, "the answer is");
  2. with more than one box, the boxes as one list (final_boxes), and stops there;
  3. with lenient=True and no box or `####` in the response, the unmarked conclusion
     (lenient.conclusion; an option letter with its value when the gold is a letter), and
     for `name = value` or a computation `|4-9| = 5` the value too (equation_sides).
explain() walks the same steps and says whether one matched; tests/test_verifier.py checks that
this agrees with verify() on every labelled row. The verdict printed is verify()'s own.
answers_equal is passed in, since nothing in grader/ imports verifier.py.
"""
from __future__ import annotations

from typing import Callable

from grader.canonical import normalize
from grader.extract import end_of_turn, extract_answer, final_boxes
from grader.lenient import conclusion, equation_sides, letter_gold

MARKERS = ("####", "\\boxed", "\\fbox")  # a response with one is never read leniently
NO_MARK = ("no marked answer (\\boxed{}, 'the answer is', ####): default mode pays only a marked answer; "
           "--lenient reads an unmarked conclusion")


def explain(response: str, gold: str, lenient: bool, equal: Callable[[str, str], bool]) -> tuple[list[str], bool]:
    """(lines, whether an answer matched) for a response and a gold already through gold_answer()."""
    def line(label: str, answer: str) -> str:
        same = _equal(equal, answer, gold)
        return f"{label:<17}: {answer!r} (normalized {normalize(answer)!r}{', equals the gold' if same else ''})"

    response = end_of_turn(response)  # as in verify(): the response ends at `<|im_end|>`
    marked = any(m in response for m in MARKERS)
    ans = extract_answer(response)
    if ans is not None:
        lines = [line("marked answer", ans)]
        if _equal(equal, ans, gold):
            return lines, True
    elif marked:
        lines = ["marked answer    : None: its \\boxed{} or #### holds no answer that can be read"]
    else:
        lines = ["marked answer    : None: " + (
            "no marked answer (\\boxed{}, 'the answer is', ####): --lenient reads the conclusion" if lenient else NO_MARK)]
    boxes = final_boxes(response) if response.count("box") > 1 else []
    if boxes:
        lines.append(line("boxes as a list", ", ".join(boxes)))
        return lines, _equal(equal, ", ".join(boxes), gold)
    if not lenient:
        return lines, False
    if marked:
        return lines + ["lenient reading  : not tried: a response with a \\boxed{} or #### is graded by that alone"], False
    read = conclusion(response, letter_gold(gold))
    if read is None:
        return lines + ["lenient reading  : None: the conclusion states no value, or several (ambiguous)"], False
    for i, side in enumerate(equation_sides(read)):
        lines.append(line("lenient reading" if i == 0 else "  its value", side))
        if _equal(equal, side, gold):
            return lines, True
    return lines, False


def _equal(equal: Callable[[str, str], bool], a: str, b: str) -> bool:
    try:  # as in verify(): a comparison that fails is "not equal"
        return equal(a, b)
    except Exception:
        return False
