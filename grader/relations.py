"""Inequalities as values: one relation, a chain read as an interval, and their comparison.

verifier.py parses answers into tagged tuples; here are the ones for relations and how they
compare with each other and with intervals. The rules (also in verifier.py's docstring):
  - `a > b` is stored as `b < a` (and \\ge as \\le), so a flipped relation is the same one;
  - a relation multiplied through by -1 is the same relation: `-y > -4` is `y < 4` (only -1:
    `2y < 8` restates `y < 4` and is not read as it, as for one-variable equations);
  - one side a lone variable (or a function of one, `g(x)`) and the other a number: a ray,
    `x > 3` is (3, \\infty); `x \\ne 3` is (-\\infty, 3) \\cup (3, \\infty);
  - a chain `a < x \\le b` pointing one way with a lone variable or `g(x)` in the middle is the
    interval (a, b]; `0 < g(x) < 2` (the range of g) is (0, 2).
Standard library only.
"""

from __future__ import annotations

import math

_FLIP = {">": "<", "\\ge": "\\le"}
_INF = ("num", math.inf)
_NEG_INF = ("num", -math.inf)


def relation(lhs, op: str, rhs):
    """("rel", op, lhs, rhs) with `a > b` stored as `b < a`."""
    if op in _FLIP:
        return ("rel", _FLIP[op], rhs, lhs)
    return ("rel", op, lhs, rhs)


def lone(v) -> bool:
    """A lone variable `x`, or a function of one written `g(x)` (a range, `0 < g(x) < 2`)."""
    if v[0] != "expr":
        return False
    t = v[1]
    return len(t) == 1 or len(t) == 4 and t[1] == "(" and t[3] == ")" and len(v[2]) == 2


def chain(lo, op1: str, mid, op2: str, hi, text: str):
    """`a < x \\le b` -> the interval (a, b]; `a > x > b` -> (b, a). Both relations must point
    the same way and the middle must be a lone variable or a function of one (`0 < g(x) < 2`,
    the range of g, is (0, 2)); `1 < 2x < 5` is not read: anything else is the text. The real
    line: `-\\infty < x < \\infty` equals \\mathbb{R}."""
    if op1 in _FLIP and op2 in _FLIP:
        lo, op1, hi, op2 = hi, _FLIP[op2], lo, _FLIP[op1]
    elif not (op1 in ("<", "\\le") and op2 in ("<", "\\le")):
        return ("text", text.casefold())
    if not lone(mid) or any(v[0] == "expr" and set(mid[2]) & set(v[2]) for v in (lo, hi)):
        return ("text", text.casefold())
    return ("seq", "(" if op1 == "<" else "[", ")" if op2 == "<" else "]", (lo, hi))


def _neg(v):
    """-v for a number or an expression (`-y` negated is the lone variable `y`)."""
    if v[0] == "num":
        return ("num", -v[1])
    if v[0] != "expr":
        return None
    t = v[1]
    if t[0] == "-" and len(t) == 2:
        return ("expr", t[1:], v[2])
    return ("expr", ("-", *t) if len(t) == 1 else ("-", "(", *t, ")"), v[2])


def negated(r):
    """A relation multiplied through by -1: `a < b` is `-b < -a` (`-y > -4` is `y < 4`)."""
    lhs, rhs = _neg(r[3]), _neg(r[2])
    return None if lhs is None or rhs is None else ("rel", r[1], lhs, rhs)


def interval(r):
    """x < a -> (-inf, a); a <= x -> [a, inf); x != a -> the set {(-inf, a), (a, inf)}, the
    union of two open rays. None unless one side is a lone variable and the other a number."""
    op, lhs, rhs = r[1], r[2], r[3]
    lone_l, lone_r = lone(lhs), lone(rhs)
    if op == "\\ne":
        a = rhs if lone_l and rhs[0] == "num" else lhs if lone_r and lhs[0] == "num" else None
        if a is None:
            return None
        return ("set", (("seq", "(", ")", (_NEG_INF, a)), ("seq", "(", ")", (a, _INF))))
    if lone_l and rhs[0] == "num":
        return ("seq", "(", ")" if op == "<" else "]", (_NEG_INF, rhs))
    if lone_r and lhs[0] == "num":
        return ("seq", "(" if op == "<" else "[", ")", (lhs, _INF))
    return None


def relations_equal(x, y, equal) -> bool:
    """x, y: two relations, or a relation and an interval / set of intervals; equal compares
    two values (verifier's _values_equal)."""
    if x[0] == "rel" and y[0] == "rel":
        if x[1] != y[1]:
            return False
        if equal(x[2], y[2]) and equal(x[3], y[3]):
            return True
        if x[1] == "\\ne" and equal(x[2], y[3]) and equal(x[3], y[2]):
            return True
        n = negated(y)  # -y > -4 and y < 4: the same relation times -1
        return n is not None and equal(x[2], n[2]) and equal(x[3], n[3])
    r, t = (x, y) if x[0] == "rel" else (y, x)
    for rr in (r, negated(r)):  # -y > -4 is y < 4, the ray (-\infty, 4)
        iv = interval(rr) if rr is not None else None
        if iv is not None and iv[0] == t[0] and equal(iv, t):
            return True
    return False
