"""Numbers and expressions compared: exact rationals, a relative tolerance, sample points.

verifier.py parses answers into tagged values; this module decides when two of its numeric
values ("num", "expr" and "pct") are equal. The policy (stated in verifier.py's docstring too):
  - two exact rationals compare exactly, except a finite decimal against a repeating rational
    (0.3333333 vs 1/3), which must agree to a relative 1e-6;
  - anything involving an irrational (a float) uses the relative 1e-6;
  - zero equals only an exact zero: there is no absolute tolerance anywhere;
  - expressions with variables are compared at the three fixed points of grader.arithmetic.points.
Standard library only.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

from grader.arithmetic import Parser, Refuse, points

REL_TOL = 1e-6  # relative tolerance when an exact comparison is impossible (see num_equal)


def terminates(q: Fraction) -> bool:
    """Whether q has a finite decimal expansion (denominator 2^i 5^j)."""
    d = q.denominator
    d >>= (d & -d).bit_length() - 1  # drop the factors of 2
    while d % 5 == 0:
        d //= 5
    return d == 1


def num_equal(a, b) -> bool:
    """Whether two numbers are equal; zero equals only zero.

    Two exact rationals compare exactly (1234567 != 1234568, 0.5 != 0.5000001), except a
    finite decimal against a repeating rational (0.3333333 vs 1/3), which must agree to a
    relative 1e-6. Anything involving an irrational (a float) uses the relative 1e-6.
    """
    if a == b:
        return True
    if isinstance(a, float) and math.isinf(a) or isinstance(b, float) and math.isinf(b):
        return False
    if a == 0 or b == 0:
        return False
    if isinstance(a, Fraction) and isinstance(b, Fraction):  # |a - b| <= 1e-6 max(|a|, |b|)
        if terminates(a) == terminates(b):
            return False
        an, ad, bn, bd = a.numerator, a.denominator, b.numerator, b.denominator
        return abs(an * bd - bn * ad) * 10**6 <= max(abs(an) * bd, abs(bn) * ad)
    a, b = float(a), float(b)
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def expr_equal(x, y) -> bool:
    """Numbers and expressions: exact / tolerant numbers; variables at three fixed points."""
    if x[0] == "num" and y[0] == "num":
        return num_equal(x[1], y[1])
    if x[0] != "expr" or y[0] != "expr" or x[2] != y[2]:
        return False
    fx, fy = fingerprint(x[1], x[2]), fingerprint(y[1], y[2])
    return fx is not None and fy is not None and all(map(num_equal, fx, fy))


def percent_equal(x, y) -> bool:
    """Policy: x% == x and x% == x/100; two percents compare as numbers (50% != 5%)."""
    if x[0] == y[0] == "pct":
        return num_equal(x[1], y[1])
    (_, p), other = (x, y) if x[0] == "pct" else (y, x)
    return other[0] == "num" and (num_equal(p, other[1]) or num_equal(p / 100, other[1]))


@functools.lru_cache(maxsize=4096)  # each set item is evaluated once, not once per pair
def fingerprint(toks: tuple, names: tuple) -> tuple | None:
    """Values of an expression at the three sample points (None if undefined or infinite
    there: `x\\infty` and `2x\\infty` are not the same expression)."""
    try:
        values = tuple(Parser(toks, env).run() for env in points(names))
    except (Refuse, ArithmeticError, ValueError, OverflowError):
        return None
    return values if all(map(math.isfinite, values)) else None


def side(v, env):
    return v[1] if v[0] == "num" else Parser(v[1], env).run()


def same_equation(x, y) -> bool:
    """l1 = r1 and l2 = r2 with variables are the same equation when l1 - r1 = c (l2 - r2)
    for one constant c != 0 at all three sample points (e.g. x + y = 3 and 2x + 2y = 6); both
    differences must be finite and non-zero there."""
    sides = (x[1], x[2], y[1], y[2])
    if any(v[0] not in ("num", "expr") for v in sides):
        return False
    names = [tuple(sorted({n for v in pair if v[0] == "expr" for n in v[2]}))
             for pair in (sides[:2], sides[2:])]
    if names[0] != names[1] or not names[0]:
        return False
    ratio = None
    for env in points(names[0]):
        try:
            d1 = side(x[1], env) - side(x[2], env)
            d2 = side(y[1], env) - side(y[2], env)
            if d1 == 0 or d2 == 0 or not math.isfinite(d1) or not math.isfinite(d2):
                return False  # y\\infty = 2x + 1 is no line
            r = d1 / d2
        except (Refuse, ArithmeticError, ValueError, OverflowError, TypeError):
            return False
        if ratio is not None and not num_equal(r, ratio):
            return False
        ratio = r
    return True


def exact_key(v):
    """A hashable key for values that are exact rationals (or exact at the sample points)."""
    if v[0] == "num" and isinstance(v[1], Fraction):
        return v
    if v[0] == "expr":
        fp = fingerprint(v[1], v[2])
        if fp is not None and all(isinstance(t, Fraction) for t in fp):
            return ("fp", v[2], fp)
    return None
