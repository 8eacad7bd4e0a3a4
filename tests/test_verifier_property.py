"""The grader's one promise, tested on generated pairs: never pay a wrong answer.

A seeded generator draws values (integers, decimals, fractions, mixed numbers, percentages,
numbers in scientific notation, tuples and sets of them), writes each in two of the forms the
grader reads, and checks that the pair is paid (same value). It then perturbs the value the
way a wrong answer differs from a right one (a digit run together, the exponent dropped or its
sign flipped, the sign flipped, the last digit changed, the order of a tuple) and checks that
every pair of different values is refused. Both modes are checked: a boxed response
(verify(..., lenient=False), the RL reward) and a plain sentence read with lenient=True.

Forms (FORMS below), each with how it is written in a sentence for the lenient mode:
  int `1234`, thousands `1,234` / `1{,}234` / `1\\,234`, decimal `0.75`, slash `-3/4`,
  frac `-\\frac{3}{4}`, mixed `5\\frac{1}{3}` and `5 1/3`, percent `40\\%` / `40%`,
  e-notation `2.5e-3` / `2.5E-3`, times-ten `2.5\\times 10^{-3}`.
Forms left out on purpose (not claimed): plain-comma thousands inside tuples and lists
(`(1,000, 2)` is a triple by policy), percentages inside tuples and sets (`40\\%` equals both
40 and 0.4 by policy, so an item-wise wrong value could be a stated right one), and LaTeX
forms in prose without `$` other than \\frac (the lenient reader reads math blocks).
A different value is skipped where the grader's stated policy makes it equal: a percent `P%`
is both P/100 and P (verifier.py's docstring), so a perturbation landing on either is skipped.

bench/verifier.py --property N runs the same generator on N values and reports the counts.
"""

from __future__ import annotations

import random
import sys
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifier import verify  # noqa: E402

SUITE_VALUES = 250  # values per test: about 6,700 pairs in about half a second

# Known wrong answers the grader pays, each with its reason: (mode, response, gold) -> why.
# check() counts them apart ("known") so that they stay visible; none are known today.
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}


# ----------------------------------------------------------------------------- forms

def _decimal(q: Fraction, max_places: int = 12) -> str | None:
    """q as an exact finite decimal (`-0.75`), or None when it has none within max_places."""
    for k in range(max_places + 1):
        scaled = q * 10**k
        if scaled.denominator == 1:
            n = abs(scaled.numerator)
            digits = str(n).rjust(k + 1, "0")
            body = digits if k == 0 else digits[:-k] + "." + digits[-k:]
            return ("-" if q < 0 else "") + body
    return None


def _sci(q: Fraction) -> tuple[str, int] | None:
    """q = m * 10^k with 1 <= |m| < 10: (m as a decimal, k), or None (q = 0 or not finite)."""
    if q == 0:
        return None
    k = 0
    while abs(q) / Fraction(10) ** k >= 10:
        k += 1
    while abs(q) / Fraction(10) ** k < 1:
        k -= 1
    m = _decimal(q / Fraction(10) ** k, 8)
    return (m, k) if m is not None else None


def _grouped(n: int, sep: str) -> str:
    s = f"{abs(n):,}".replace(",", sep)
    return ("-" if n < 0 else "") + s


def forms(q: Fraction, item: bool = False) -> list[tuple[str, str, str]]:
    """(form, text as a gold / in a box, text in a sentence) for the value q. item=True: the
    forms allowed inside a tuple, set or list (no plain-comma thousands, no percent)."""
    out = []
    sign, a = ("-" if q < 0 else ""), abs(q)
    if q.denominator == 1:
        n = q.numerator
        out.append(("int", str(n), str(n)))
        if abs(n) >= 1000:
            if not item:
                out.append(("thousands", _grouped(n, ","), _grouped(n, ",")))
            for sep in ("{,}", "\\,"):
                t = _grouped(n, sep)
                out.append(("thousands", t, f"${t}$"))
    else:
        t = f"{sign}\\frac{{{a.numerator}}}{{{a.denominator}}}"
        out += [("slash", f"{sign}{a.numerator}/{a.denominator}",
                 f"{sign}{a.numerator}/{a.denominator}"), ("frac", t, f"${t}$")]
        if a > 1:
            w, r = divmod(a.numerator, a.denominator)
            t = f"{sign}{w}\\frac{{{r}}}{{{a.denominator}}}"
            out += [("mixed", t, f"${t}$"),
                    ("mixed-plain", f"{sign}{w} {r}/{a.denominator}",
                     f"{sign}{w} {r}/{a.denominator}")]
    d = _decimal(q)
    if d is not None and q.denominator != 1:
        out.append(("decimal", d, d))
    sci = _sci(q)
    if sci is not None and d is not None:
        m, k = sci
        e = random.choice("eE")
        out.append(("e-notation", f"{m}{e}{k}", f"{m}{e}{k}"))
        t = f"{m}\\times 10^{{{k}}}"
        out.append(("times-ten", t, f"${t}$"))
    p = _decimal(q * 100)
    if p is not None and not item:
        out.append(("percent", f"{p}\\%", f"{p}%"))
    return out


# ----------------------------------------------------------------------------- values

def draw_value(rng: random.Random) -> Fraction:
    """One value of a kind chosen at random (each kind favours the forms it is read in)."""
    kind = rng.randrange(6)
    sign = rng.choice((1, 1, -1))
    if kind == 0:  # small integer
        return Fraction(sign * rng.randrange(0, 1000))
    if kind == 1:  # large integer: thousands separators
        return Fraction(sign * rng.randrange(1000, 10**8))
    if kind == 2:  # decimal
        return Fraction(sign * rng.randrange(1, 10**5), 10 ** rng.randrange(1, 5))
    if kind == 3:  # fraction
        return Fraction(sign * rng.randrange(1, 200), rng.randrange(2, 40))
    if kind == 4:  # mixed number: a whole part and a proper fraction
        d = rng.randrange(2, 30)
        return sign * (rng.randrange(1, 60) + Fraction(rng.randrange(1, d), d))
    # scientific notation: a short mantissa times a power of ten
    return Fraction(sign * rng.randrange(11, 99999), 10**4) * Fraction(10) ** rng.randrange(-12, 13)


def perturbations(q: Fraction, rng: random.Random) -> list[tuple[str, Fraction]]:
    """Wrong values near q: the mistakes a grader must not confuse with the right answer."""
    out = []
    if q != 0:
        out.append(("sign flipped", -q))
    a = abs(q)
    if a.denominator != 1 and a > 1:  # `5 1/3` read as 51/3
        w, r = divmod(a.numerator, a.denominator)
        run = Fraction(int(f"{w}{r}"), a.denominator)
        out.append(("digits run together", run if q > 0 else -run))
        out.append(("fraction dropped", Fraction(w) if q > 0 else -Fraction(w)))
    sci = _sci(q) if _decimal(q) is not None else None
    if sci is not None and sci[1] != 0:
        m = Fraction(sci[0])
        out.append(("exponent dropped", m))
        out.append(("exponent sign flipped", m * Fraction(10) ** -sci[1]))
    d = _decimal(q)
    if d is not None and "." in d:  # the last decimal digit off by one
        out.append(("last digit", q + Fraction(1, 10 ** len(d.split(".")[1]))))
    elif q.denominator != 1:
        out.append(("numerator off by one", q + Fraction(1, q.denominator)))
    else:
        out.append(("off by one", q + rng.choice((1, -1))))
    out.append(("times ten", q * 10) if q != 0 else ("one", Fraction(1)))
    return [(name, v) for name, v in out if v != q]


def _policy_equal(fa: str, qa: Fraction, fb: str, qb: Fraction) -> bool:
    """Whether the stated policy makes two different values equal: `P%` is P/100 and also P,
    so `50\\%` (the value 1/2) is paid against 50."""
    return fa == "percent" and qb == qa * 100 or fb == "percent" and qa == qb * 100


# ----------------------------------------------------------------------------- pairs

def _box(text: str) -> str:
    return f"So the answer is $\\boxed{{{text}}}$."


def _sentence(text: str) -> str:
    return f"After simplifying, we conclude that the value is {text}."


def _rejecting(text: str, rejected: str) -> str:
    """A sentence that states text and rejects an alternative after it."""
    return f"Checking both, the value is {text}, not {rejected}."


def scalar_pairs(q: Fraction, rng: random.Random):
    """(mode, response, gold, expected, what) rows for one scalar value."""
    fs = forms(q)
    (fa, ga, sa), (fb, gb, _) = rng.sample(fs, 2) if len(fs) > 1 else (fs[0], fs[0])
    what = f"{fa} vs {fb}"
    yield "boxed", _box(ga), gb, True, what
    yield "lenient", _sentence(sa), gb, True, what
    for name, w in perturbations(q, rng):
        fw, gw, sw = rng.choice(forms(w))
        what = f"{fa} vs {fw} ({name})"
        if _policy_equal(fa, q, fw, w):
            continue
        yield "boxed", _box(ga), gw, False, what
        yield "lenient", _sentence(sa), gw, False, what
        yield "boxed", _box(gw), ga, False, what + " reversed"
        yield "lenient", _rejecting(sa, sw), gw, False, what + ", rejected"
        yield "lenient", _rejecting(sa, sw), ga, True, what + ", the other rejected"


def _item(q: Fraction, rng: random.Random) -> tuple[str, str]:
    _, gold, sentence = rng.choice(forms(q, item=True))
    return gold, sentence.strip("$")


def structure_pairs(rng: random.Random):
    """Rows for a tuple `(a, b[, c])`, a set `\\{a, b\\}` and a bare list `a, b`."""
    n = rng.choice((2, 2, 3))
    qs = []
    while len(qs) < n:
        q = draw_value(rng)
        if q not in qs:
            qs.append(q)
    kind = rng.choice(("tuple", "set", "list"))
    wrap = {"tuple": ("(", ")"), "set": ("\\{", "\\}"), "list": ("", "")}[kind]

    def write(values):
        """(gold, in a sentence): a math block, or plain prose for a list of plain items."""
        items = [_item(v, rng) for v in values]
        gold = wrap[0] + ", ".join(g for g, _ in items) + wrap[1]
        math = wrap[0] + ", ".join(s for _, s in items) + wrap[1]
        plain = kind == "list" and all(g == s and not {"\\", "{"} & set(g) for g, s in items)
        return gold, (math if plain and rng.random() < 0.5 else f"${math}$")

    ga, sa = write(qs)
    other = qs if kind == "tuple" else rng.sample(qs, n)  # sets and lists: any order
    gb, _ = write(other)
    yield "boxed", _box(ga), gb, True, f"{kind} in two forms"
    yield "lenient", _sentence(sa), gb, True, f"{kind} in two forms"
    wrongs = []
    if kind == "tuple":
        wrongs.append(("order swapped", [qs[1], qs[0]] + qs[2:]))
    i = rng.randrange(n)
    for name, w in perturbations(qs[i], rng)[:3]:
        if w not in qs:
            wrongs.append((f"item {name}", qs[:i] + [w] + qs[i + 1 :]))
    wrongs.append(("item missing", qs[:-1]))
    for name, values in wrongs:
        gw, sw = write(values)
        yield "boxed", _box(ga), gw, False, f"{kind}: {name}"
        yield "lenient", _sentence(sa), gw, False, f"{kind}: {name}"
        yield "boxed", _box(gw), ga, False, f"{kind}: {name} reversed"
        yield "lenient", _rejecting(sa, sw), gw, False, f"{kind}: {name}, rejected"
        yield "lenient", _rejecting(sa, sw), ga, True, f"{kind}: {name}, the other rejected"


def generate(n: int, seed: int = 0):
    """All rows for n drawn values (about one in four a tuple, set or list)."""
    rng = random.Random(seed)
    random.seed(seed)  # forms() picks e or E with the module's generator
    for _ in range(n):
        if rng.random() < 0.25:
            yield from structure_pairs(rng)
        else:
            yield from scalar_pairs(draw_value(rng), rng)


def check(n: int, seed: int = 0) -> dict:
    """Run the rows; counts and the disagreements (wrong answers paid, right ones refused)."""
    stats = {"tried": 0, "paid": 0, "refused": 0, "wrong_paid": [], "right_refused": [],
             "known": []}
    for mode, response, gold, expected, what in generate(n, seed):
        got = verify(response, gold, lenient=mode == "lenient")
        stats["tried"] += 1
        stats["paid" if got else "refused"] += 1
        if got and not expected:
            key = (mode, response, gold)
            stats["known" if key in KNOWN_FAILURES else "wrong_paid"].append((what, *key))
        elif expected and not got:
            stats["right_refused"].append((what, mode, response, gold))
    return stats


# ----------------------------------------------------------------------------- tests

def test_never_pays_a_wrong_answer():
    stats = check(SUITE_VALUES, seed=0)
    assert stats["tried"] > 3000
    assert stats["wrong_paid"] == [], stats["wrong_paid"][:10]


def test_pays_every_form_it_claims():
    stats = check(SUITE_VALUES, seed=1)
    assert stats["right_refused"] == [], stats["right_refused"][:10]


def test_generated_forms_are_what_they_claim():
    """The generator itself: each form of a value is written as that value."""
    q = Fraction(-16, 3)
    texts = {f: g for f, g, _ in forms(q)}
    assert texts["mixed-plain"] == "-5 1/3" and texts["mixed"] == "-5\\frac{1}{3}"
    assert _sci(Fraction(2998, 10) * 10**6) == ("2.998", 8)
    assert ("digits run together", Fraction(-51, 3)) in perturbations(q, random.Random(0))
