"""Rule-based math answer verifier: the reward of every rollout.

    reward = verify(response, gold)                 in {False, True}, the RL reward
    grade = verify(response, gold, lenient=True)    for grading other models' outputs

Three stages, each a function:
  1. extract_answer(response) (grader/extract.py): the last \\boxed{...} / \\fbox{...} (brace
     counting, also `\\boxed 5`), unless a "final answer is" clause follows it; else the last
     GSM8K `#### N`; else the last "(final) answer is / Answer:" clause or `Answer` followed by
     math (`Answer $7$`). None when there is none (a last-number fallback only when asked for).
     Boxes that only connectors or a short phrase separate (`$\\boxed{-3}$ and $\\boxed{2}$`)
     are also tried as one list (extract.final_boxes) when the last box alone does not match.
     A response ends at its first chat end-of-turn token (`17<|im_end|>`: extract.END_TOKENS).
  2. normalize(answer) (grader/canonical.py): one canonical string, MATH-grader style (spacing
     commands, \\left, \\dfrac, \\frac12, \\text{} units, degrees, currency, thousands
     separators, `x =`, labels, option letters...).
  3. answers_equal(a, b): equal strings, else both sides parsed into values (numbers, tuples,
     intervals, sets, matrices, equations, relations, sums, option letters, text) compared
     structurally: numbers as exact Fractions where possible (grader/numeric.py), relations in
     grader/relations.py, arithmetic through grader/arithmetic.py (a bounded parser, no eval).

The default mode pays only an answer that is boxed or explicitly marked: a number that is not
stated as the answer is never paid, so a policy cannot be rewarded for a number it merely
wrote. lenient=True (grader/lenient.py) also reads an unmarked answer from the conclusion ("so the
probability that she wins is 3/5."), and refuses when that reading is ambiguous.

Choices where graders disagree (stated once, tested in tests/test_verifier*.py):
  - Percent: `x\\%` equals both `x` (the MATH grader strips \\%) and `x/100` (its value), so
    `28\\%` == `28` == `0.28`. Two percents compare as numbers: `50\\%` != `5\\%`.
  - Tolerance (grader/numeric.py): exact rationals compare exactly (`1/2^98` != `1/2^99`), except a
    finite decimal against a repeating rational (`0.3333333` vs `1/3`), which must agree to a
    relative 1e-6, as irrational values do. Zero equals only zero: no absolute tolerance.
  - Bare lists `1, 2` are unordered sets of solutions; `(1, 2)` and `[1, 2)` are ordered and
    their bracket types must match. `\\pm` expands to both signs. A 1-row or 1-column matrix
    equals the tuple with the same entries. A labelled tuple `(x, y) = (7, 6)` is the tuple
    (labels distinct, in alphabetical order). A union of listed sets is the listed set; a
    set-builder `\\{x \\mid x > 3\\}` is its condition; `\\mathbb{R}` and "all real numbers"
    are (-\\infty, \\infty).
  - `2\\frac{1}{4}` and `2 1/4` are the mixed number 9/4: an integer, then a proper fraction
    (0 < a < b) right after it or, in plain text, after a space. `2 5/4` is neither 25/4 nor
    13/4 (text); `1 000/3` is grouping (1000/3), `1 1` is 11 (spaces go, MATH convention).
  - Expressions with variables are compared at three fixed rational points; with \\sin, \\cos,
    \\tan, \\sec, \\csc, \\cot, \\ln, \\exp and Greek variables this covers commuted
    products and identities (`\\sec^2 y` == `\\tan^2 y + 1`) within the relative 1e-6.
  - Lists: `;` separates items like `,`; `a=3,b=1;a=5,b=1` and `(a, b) \\in \\{(3,1), (5,1)\\}`
    are the tuples (3,1), (5,1) (labels distinct, alphabetical); `{1, 2}` in bare braces is a
    set; "or" joins like "and". A list with a repeat equals its distinct elements when the
    other list repeats none (`1, 1, 2` == `1, 2`, but `1, 1, 2` != `1, 2, 2`); a list never
    equals a single value (`2, 2` != `2`).
  - Labels before `=` are dropped on either side: `x =`, `f(x) =`, `PQ =`, `[ABC] =`, `|PQ| =`,
    `\\overline{AB} =`, `m\\angle ABC =`, ratio names `P:Q = 2` (`2:1` itself is not 2); a
    product `xy = 6` stays an equation. Option letters `B`, `(B)`, `\\text{(B)}`, `B. y = 17`,
    `(B) 12`, `{B}`, `[B]`, `option B` are the letter; only the letter is graded.
  - Equations: a leading `x =` / `x \\in` (one variable) is dropped; in a chain
    `x = 5+5+1 = 11` the last side is the answer, and so is the result of a computation
    `1 + 2 = 3` (both sides without variables). Before `\\approx` the exact value is the
    answer (`\\frac{\\sqrt2}{2} \\approx 0.707`, `x = 1/3 \\approx 0.33`): the approximation
    is not checked, and alone it is not paid; `x \\approx 11` is 11. Other equations compare
    side by side in either order, or as the same equation up to a constant factor
    (`x + y = 3` == `2x + 2y = 6`), also against `y = ...` when both are equations in two or
    more variables (`y = 2x + 3` == `2x - y + 3 = 0`). Inequalities (grader/relations.py): `a > b`
    is `b < a`, times -1 is the same (`-y > -4` == `y < 4`; not `2y < 8`), a chain
    `a \\le x < b` or `0 < g(x) < 2` is an interval.
  - Indexed symbols: `a_1b_2` is a_1 times b_2 (`x_10` is x_{10}); `\\sum_{i=1}^{n} a_i b_i`
    equals a sum with the same bounds and an equal body (`b_i a_i`); \\prod likewise.
  - Units: trailing unit words after a number are dropped (`5 \\text{ cm}` == `5`, also
    `60 \\text{ km/h}`, `9.8 m/s^2`, `25^\\circ C`, currency signs), so two different units
    with the same number are equal, as in the MATH grader. A scale word is no unit: `1.5
    million` is 1500000 (thousand, million, billion, trillion; canonical.SCALE_WORDS).
  - Thousands: `1{,}000`, `1\\,000`, `1\\!000`, `10,\\! 000` and these mixed with commas
    are one number; `32, 349` (a comma then a space, `\\,` included) is a list. A stray
    backslash or line break after an answer (`5\\`) is dropped.
  - `2^10` is read as 2^{10} (what the model means), not LaTeX's 2^1 0. Plain-text names
    sqrt, pi, sin, cos, tan, ln, exp as whole words are the commands (`3*sqrt(3)`, `4*pi`).
  - Characters a policy could hide in an answer (controls, zero-width and bidi marks, circled
    digits, mixed-script digit runs) make it wrong; they are never stripped (canonical.forbidden).

Safety by construction: no eval/exec, no regex with nested quantifiers on unbounded input,
answers longer than MAX_ANSWER_CHARS are only compared as strings, the parser has a depth cap,
and exponents, factorials and bit lengths are bounded *before* computing. Any failure while
parsing or comparing means "not equal"; verify() never raises on str input.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import sys

from grader.arithmetic import GREEK, Refuse, expr_value, number
from grader.numeric import exact_key, expr_equal, percent_equal, same_equation
from grader.relations import chain, relation, relations_equal
from grader.canonical import MAX_ANSWER_CHARS, PLAIN_NUMBER, encloses, forbidden, normalize, split_top
from grader.extract import end_of_turn, extract_answer, final_boxes, gold_answer
from grader.lenient import conclusion, equation_sides, letter_gold
from grader.explain import explain

MAX_ITEMS = 32  # longest list / set / tuple we compare structurally


# ----------------------------------------------------------------------------- values

_MATRIX = re.compile(r"\\begin\{([pbBvV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}")
_RELATION = re.compile(r"(\\le|\\ge|\\ne|<|>)")
_LABEL = re.compile(r"[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?|\\(?:%s)" % "|".join(GREEK))
_SET_BUILDER = re.compile(r"[a-zA-Z](?:\\in\\mathbb\{R\})?(?:\\mid|\||:)(.+)")  # {x | x > 3}
# The real line, written as a set (after normalize: spaces gone, \\text unwrapped, casefolded).
_REALS = {"\\mathbb{r}", "\\mathbbr", "\\r", "\\reals", "allrealnumbers", "allreals",
          "therealnumbers", "realnumbers", "anyrealnumber", "everyrealnumber"}
_REAL_LINE = ("seq", "(", ")", (("num", -math.inf), ("num", math.inf)))
_CHOICE = re.compile(r"\(?([A-Ea-e])\)?")
# \sum / \prod with their bounds, then the body: `\sum_{i=1}^{n}a_ib_i` (spaces are gone).
_BIG_OP = re.compile(r"\\(sum|prod)_(\{[^{}]{1,40}\}|[a-z])\^(\{[^{}]{1,40}\}|[a-zA-Z0-9])(.+)")


def _value(s: str, top: bool = True):
    """Parse a normalised answer into a value, its kind first: ("num", q) ("expr", tokens, names)
    ("pct", q) ("set", items) ("seq", open, close, items) ("matrix", rows) ("eq", lhs, rhs)
    ("rel", op, lhs, rhs) ("big", op, lower, upper, body) ("choice", letter) ("text", s)."""
    if PLAIN_NUMBER.fullmatch(s):  # fast path: most answers are plain numbers
        return ("num", -number(s[1:]) if s[0] == "-" else number(s))
    if len(s) <= 20 and s.casefold() in _REALS:
        return _REAL_LINE
    if s.endswith("%") and s.count("%") == 1:
        v = _value(s[:-1], top)
        if v[0] == "num":
            return ("pct", v[1])
        return ("text", s.casefold())
    m = _MATRIX.fullmatch(s)
    if not m and s[:1] in "([" and s[-1:] in ")]" and "\\begin" in s:
        m = _MATRIX.fullmatch(s[1:-1])  # \left[\begin{array}...\end{array}\right]
    if m:
        rows = [r for r in m.group(2).split("\\\\") if r]
        if len(rows) > MAX_ITEMS:
            raise Refuse("matrix too big")
        return ("matrix", tuple(tuple(_value(c, False) for c in r.split("&")) for r in rows))
    if top and _listed_set(s):
        m = _SET_BUILDER.fullmatch(s[2:-2])
        if m and _RELATION.search(m.group(1)):  # {x | 2 < x < 5}: the condition is the answer
            return _value(m.group(1), False)
        return ("set", _set_values(split_top(s[2:-2])[:MAX_ITEMS + 1]))
    if top:
        parts = split_top(s)
        if len(parts) > MAX_ITEMS:
            raise Refuse("too many items")
        if len(parts) > 1 and not (s[0] in "([" and s[-1] in ")]" and encloses(s)):
            return ("set", _set_values(parts))
        if "\\cup" in s:
            return _union(s.split("\\cup"))
        if "\\pm" in s and s.count("\\pm") == 1:
            return ("set", (_value(s.replace("\\pm", "+"), False),
                            _value(s.replace("\\pm", "-"), False)))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and encloses(s):
        parts = split_top(s[1:-1])
        if len(parts) > 1:
            if len(parts) > MAX_ITEMS:
                raise Refuse("too many items")
            return ("seq", s[0], s[-1], tuple(_value(x, False) for x in parts))
    m = _CHOICE.fullmatch(s)
    if m and (s[0] == "(" or s.isupper()):
        return ("choice", m.group(1).upper())
    m = _BIG_OP.fullmatch(s)
    if m:  # a sum or product: the same bounds, and bodies equal as expressions
        return ("big", m.group(1), m.group(2).strip("{}"), m.group(3).strip("{}"),
                _value(m.group(4), False))
    sides = split_top(s, "=") if "=" in s else ()  # `=` in braces (`\sum_{i=1}`): no equation
    if len(sides) == 2:
        lhs, rhs = sides
        if lhs and rhs:
            eq = _labelled_tuple(lhs, rhs) or ("eq", _value(lhs, False), _value(rhs, False))
            if eq[0] == "eq" and eq[1][0] == "num" and eq[2][0] == "num":
                return eq[2]  # a computation and its result, `1 + 2 = 3`: the result
            return eq
    rel = _RELATION.split(s)
    if len(rel) == 3 and rel[0] and rel[2]:  # one inequality (relations.py)
        return relation(_value(rel[0], False), rel[1], _value(rel[2], False))
    if len(rel) == 5 and all(rel[0::2]):  # a chain a < x <= b: an interval
        lo, mid, hi = (_value(p, False) for p in rel[0::2])
        return chain(lo, rel[1], mid, rel[3], hi, s)
    try:
        return expr_value(s)
    except (Refuse, ArithmeticError, ValueError, OverflowError):
        return ("text", s.casefold())


def _listed_set(s: str) -> bool:
    """Whether s is one listed set `\\{...\\}`: the opening brace closes at the very end."""
    if not (s.startswith("\\{") and s.endswith("\\}")):
        return False
    depth = 0
    for i in range(len(s) - 1):
        if s[i] == "\\" and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            if depth == 0:
                return i == len(s) - 2
    return False


def _union(parts: list[str]):
    """A union. Of listed sets only (`\\{1,2\\} \\cup \\{3\\}`): the one set of their elements,
    each counted once, so it equals the listed set `\\{1,2,3\\}`. Otherwise (intervals, rays)
    a set whose elements are the parts, compared in any order."""
    if len(parts) > MAX_ITEMS:
        raise Refuse("too many parts")
    if not all(_listed_set(p) for p in parts):
        return ("set", tuple(_value(x, False) for x in parts))
    out: list = []
    for p in parts:
        for v in _set_values(split_top(p[2:-2])):
            if len(out) > MAX_ITEMS:
                raise Refuse("too many items")
            if not any(_values_equal(v, w) for w in out):
                out.append(v)
    return ("set", tuple(out))


def _labelled_tuple(lhs: str, rhs: str):
    """`(x,y)=(7,6)` -> the tuple (7, 6); None when lhs is not a tuple of variables.

    The labels must be distinct variables (letters, x_1, Greek) and as many as the entries.
    Latin labels must stand in alphabetical order, the order a bare answer `(7, 6)` is read
    in: `(y,x)=(6,7)` is not reordered (it is compared as text), since a question may ask for
    another order and a reordered answer could then match a wrong gold. Greek labels keep
    their written order ((r, \\theta) is the polar convention).
    """
    if not (lhs[:1] == "(" and lhs[-1:] == ")" and rhs[:1] == "(" and rhs[-1:] == ")"):
        return None
    labels = lhs[1:-1].split(",")
    if len(labels) < 2 or not all(map(_LABEL.fullmatch, labels)) or not encloses(rhs):
        return None
    latin = [x for x in labels if not x.startswith("\\")]
    entries = split_top(rhs[1:-1])
    if len(set(labels)) != len(labels) or len(entries) != len(labels) or latin != sorted(latin):
        return ("text", (lhs + "=" + rhs).casefold())
    return _value(rhs, False)


def _set_values(parts: list[str]) -> tuple:
    """Values of the items of a set; an item with one \\pm counts as two."""
    out = []
    for x in parts:
        if x.count("\\pm") == 1:
            out += [_value(x.replace("\\pm", "+"), False), _value(x.replace("\\pm", "-"), False)]
        else:
            out.append(_value(x, False))
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _parsed(s: str):
    return _value(s)


def _distinct(items: tuple) -> tuple:
    """The items with repeats removed (first occurrence kept)."""
    out: list = []
    for v in items:
        if not any(_values_equal(v, w) for w in out):
            out.append(v)
    return tuple(out)


def _values_equal(x, y) -> bool:
    """Whether two parsed values (see _value) are equal: the first rule for their kinds."""
    kx, ky = x[0], y[0]
    if kx in ("num", "expr") and ky in ("num", "expr"):
        return expr_equal(x, y)
    if "pct" in (kx, ky):
        return percent_equal(x, y)
    if kx == ky == "set":
        return _sets_equal(x[1], y[1])
    if kx == "set" and len(x[1]) == 1:  # a one-item list is its item
        return _values_equal(x[1][0], y)
    if ky == "set" and len(y[1]) == 1:
        return _values_equal(x, y[1][0])
    if kx == ky == "seq":  # tuples and intervals: the same brackets, equal items in order
        (_, *brackets_x, items_x), (_, *brackets_y, items_y) = x, y
        return brackets_x == brackets_y and _items_equal(items_x, items_y)
    if kx == ky == "matrix":
        return len(x[1]) == len(y[1]) and all(_items_equal(r, s) for r, s in zip(x[1], y[1]))
    if {kx, ky} == {"matrix", "seq"}:
        return _vector_equal(x, y) if kx == "matrix" else _vector_equal(y, x)
    if "rel" in (kx, ky) and {kx, ky} <= {"rel", "seq", "set"}:
        return relations_equal(x, y, _values_equal)
    if kx == ky == "big":  # sums and products: the same operator and bounds, equal bodies
        (_, *bounds_x, body_x), (_, *bounds_y, body_y) = x, y
        return bounds_x == bounds_y and _values_equal(body_x, body_y)
    if kx == ky == "eq":  # side by side in either order, or up to a constant factor
        (_, lhs_x, rhs_x), (_, lhs_y, rhs_y) = x, y
        return (_values_equal(lhs_x, lhs_y) and _values_equal(rhs_x, rhs_y)) or (
            _values_equal(lhs_x, rhs_y) and _values_equal(rhs_x, lhs_y)) or same_equation(x, y)
    if "choice" in (kx, ky):  # only the letter is graded
        letter = _letter(x)
        return letter is not None and letter == _letter(y)
    return kx == ky == "text" and x[1] == y[1]


def _items_equal(xs, ys) -> bool:
    """Two sequences of values, equal item by item in order."""
    return len(xs) == len(ys) and all(_values_equal(a, b) for a, b in zip(xs, ys))


def _sets_equal(xs: tuple, ys: tuple) -> bool:
    """Unordered lists: each item of one matched by its own equal item of the other."""
    if len(xs) != len(ys):  # a list with a repeat is its distinct items if the other has none
        dx, dy = _distinct(xs), _distinct(ys)
        if (len(dx) < len(xs)) == (len(dy) < len(ys)) or len(dx) != len(dy):
            return False
        xs, ys = dx, dy
    exact: dict = {}  # exact matches first through a dict (linear), then the rest pairwise
    for b in ys:
        exact.setdefault(exact_key(b), []).append(b)
    rest = []
    for a in xs:
        k = exact_key(a)
        if k is not None and exact.get(k):
            exact[k].pop()
        else:
            rest.append(a)
    left = [b for bs in exact.values() for b in bs]
    for a in rest:
        j = next((j for j, b in enumerate(left) if _values_equal(a, b)), None)
        if j is None:
            return False
        del left[j]
    return True


def _vector_equal(matrix, seq) -> bool:
    """A 1-row or 1-column matrix against a tuple `(1, 2)` / `[1, 2]` with the same entries."""
    (_, rows), (_, open_, close, items) = matrix, seq
    vector = len(rows) == 1 or all(len(r) == 1 for r in rows)
    return vector and open_ + close in ("()", "[]") and _items_equal(sum(rows, ()), items)


def _letter(v) -> str | None:
    """The option letter a value states: `(B)`, or one letter read as an expression or text."""
    if v[0] == "choice":
        return v[1]
    word = v[1][0] if v[0] == "expr" and len(v[1]) == 1 else v[1] if v[0] == "text" else ""
    return word.upper() if len(word) == 1 else None


def _same_curve(a: str, b: str) -> bool:
    """Two equations in the same two or more variables that describe the same curve:
    `y = 2x + 3` == `2x - y + 3 = 0` == `4x - 2y = -6` (equal up to a non-zero factor and a
    rearrangement, checked as in same_equation at the three sample points).

    normalize drops a leading `y =` (so that `y = 2x + 1` equals the answer `2x + 1`); here
    it is kept, so only two answers that are both equations take this path. One-variable
    equations are left out on purpose: `2x - 6 = 0` restates a question whose answer is
    `x = 3`, and must not be rewarded as that answer.
    """
    x, y = _parsed(normalize(a, keep_lhs=True)), _parsed(normalize(b, keep_lhs=True))
    if x[0] != "eq" or y[0] != "eq":
        return False
    names = {n for v in (x[1], x[2]) if v[0] == "expr" for n in v[2]}
    return len(names) >= 2 and same_equation(x, y)


def answers_equal(a: str, b: str) -> bool:
    """Whether two already-extracted answers are mathematically the same (symmetric)."""
    try:
        if forbidden(a) or forbidden(b):  # hidden characters are never repaired
            return False
        if a.strip() == b.strip():
            return bool(a.strip())
        if len(a) > MAX_ANSWER_CHARS or len(b) > MAX_ANSWER_CHARS:
            return False
        na, nb = normalize(a), normalize(b)
        if na == nb:
            return bool(na)
        if not na or not nb:
            return False
        if _values_equal(_parsed(na), _parsed(nb)):
            return True
        return "=" in a and "=" in b and _same_curve(a, b)
    except Exception:  # any parse failure means "not shown equal"
        return False


def verify(response: str, gold: str, *, lenient: bool = False) -> bool:
    """1 if the response's final answer equals the gold answer, else 0. Never raises.

    The answer is extracted from the response only (no last-number fallback); a gold that
    itself contains \\boxed{...} is replaced by the box's content. Boxes that together state a
    list (`\\boxed{-3}` and `\\boxed{2}`, see extract.final_boxes) also count as that list.

    lenient=False is the RL reward: the answer must be boxed or explicitly marked, and a
    number that is not stated as the answer is never paid. lenient=True is for grading other
    models' outputs: when the response has no box and no `####`, the sentence of its last
    "answer" or its conclusion is also read as a human grader reads it (grader/lenient.py).
    """
    try:
        if not isinstance(response, str) or not isinstance(gold, str):
            return False
        gold, response = gold_answer(gold), end_of_turn(response)  # `17<|im_end|>` is 17
        ans = extract_answer(response)
        if ans is not None and answers_equal(ans, gold):
            return True
        boxes = final_boxes(response) if response.count("box") > 1 else []
        if boxes:  # the last box alone did not match: several boxes as one list
            return answers_equal(", ".join(boxes), gold)
        if not lenient or "####" in response or "\\boxed" in response or "\\fbox" in response:
            return False
        read = conclusion(response, letter_gold(gold))
        return read is not None and any(answers_equal(a, gold) for a in equation_sides(read))
    except Exception:
        return False


# ----------------------------------------------------------------------------- CLI

def _check_pair(response: str, gold: str, lenient: bool = False) -> int:
    """Each answer verify() compared, in its order (grader/explain.py), then verify()'s verdict."""
    g = gold_answer(gold)
    ok = verify(response, gold, lenient=lenient)
    print("\n".join(explain(response, g, lenient, answers_equal)[0]))
    print(f"normalized gold  : {normalize(g)!r}")
    print(f"verdict          : {'CORRECT' if ok else 'WRONG'}")
    return 0 if ok else 1


def _check_jsonl(path: str, lenient: bool = False) -> int:
    try:
        f = open(path, encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        print(f"{path}: cannot open: {e.strerror}", file=sys.stderr)
        return 2
    n = correct = bad = labelled = agree = 0
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"{path}:{lineno}: invalid JSON ({e.msg})", file=sys.stderr)
                bad += 1
                continue
            if not isinstance(rec, dict):
                reason = "not a JSON object"
            elif not isinstance(rec.get("response"), str) or not isinstance(rec.get("gold"), str):
                reason = 'needs string fields "response" and "gold"'
            elif "expected" in rec and not isinstance(rec["expected"], bool):
                reason = '"expected" must be true or false'
            else:
                reason = ""
            if reason:
                print(f"{path}:{lineno}: {reason}", file=sys.stderr)
                bad += 1
                continue
            ok = verify(rec["response"], rec["gold"], lenient=lenient)
            n += 1
            correct += ok
            if "expected" in rec:
                labelled += 1
                agree += ok == rec["expected"]
    print(f"{path}: {n} graded, {correct} correct ({correct / max(n, 1):.1%}), {bad} malformed")
    if labelled:
        print(f"agreement with 'expected': {agree}/{labelled} ({agree / labelled:.1%})")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="verifier.py",
        description="Grade a math answer: extract the final answer from a response and "
                    "compare it with a gold answer.",
        epilog="exit status:\n"
               "  0  the answer is correct (pair mode) / no malformed lines (--jsonl)\n"
               "  1  the answer is wrong (pair mode) / some malformed lines (--jsonl)\n"
               "  2  usage error or unreadable file\n\n"
               "examples:\n"
               "  python verifier.py 'so the answer is \\boxed{\\frac12}' '0.5'\n"
               "  python verifier.py --lenient 'so the probability is 3/5.' '0.6'\n"
               "  python verifier.py --jsonl grades.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("response", nargs="?", help="model response text (the last \\boxed{} counts)")
    p.add_argument("gold", nargs="?", help="reference answer, e.g. '\\frac{1}{2}' or '1,234'")
    p.add_argument("--jsonl", metavar="FILE",
                   help='grade lines of {"response": ..., "gold": ..., "expected": bool?}')
    p.add_argument("--lenient", action="store_true",
                   help="also read an unmarked answer from the conclusion (for grading other "
                        "models' outputs; the RL reward is the default, stricter mode)")
    args = p.parse_args(argv)
    if args.jsonl:
        if args.response is not None:
            p.error("give either --jsonl FILE or RESPONSE GOLD, not both")
        return _check_jsonl(args.jsonl, args.lenient)
    if args.response is None or args.gold is None:
        p.error("need RESPONSE and GOLD (or --jsonl FILE)")
    return _check_pair(args.response, args.gold, args.lenient)


if __name__ == "__main__":
    sys.exit(main())
