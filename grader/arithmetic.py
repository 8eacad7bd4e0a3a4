"""The bounded arithmetic parser behind verifier.py: LaTeX-ish tokens -> an exact value.

    expr_value("2\\sqrt{3}")  -> ("num", 3.4641...)       no variables: a number
    expr_value("x^2+2x+1")    -> ("expr", tokens, ("x",))  evaluated later at points(names)

Numbers are exact Fractions while the arithmetic stays rational; roots, pi, e and the
functions (\\sin, \\cos, ..., see FUNCTIONS) give floats. Variables are one letter (x, x_1)
or a lowercase Greek letter (GREEK). Every operation is bounded *before* it is computed
(exponent size, factorial argument, bit length of numerator and denominator, literal length,
recursion depth), so one call is cheap whatever the input. No eval, no exec: a hand-written
recursive-descent parser over a token list. Anything it cannot read raises Refuse.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

MAX_DEPTH = 60  # parser recursion cap (nested brackets / fractions)
MAX_BITS = 8192  # largest numerator/denominator bit length we compute with
MAX_EXPONENT = 4096  # largest |integer exponent| for exact powers
MAX_FACTORIAL = 300  # n! refused above this (1000! is refused)
MAX_BINOM_N = 2000  # \\binom{n}{k} refused above this n
MAX_LITERAL_DIGITS = 600  # longest number literal we convert


# Lowercase Greek letters read as variables (\\pi is the constant; capitals are not read).
GREEK = ("alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
         "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau",
         "upsilon", "phi", "varphi", "chi", "psi", "omega")


class Refuse(Exception):
    """The answer is not something we can evaluate (or too big to)."""


def _sec(x):
    return 1 / math.cos(x)


def _csc(x):
    return 1 / math.sin(x)


def _cot(x):
    return math.cos(x) / math.sin(x)


# Functions of one argument; they return floats, compared with the relative tolerance. \log
# is left out (its base is 10 in some texts and e in others), and so are the inverse
# functions (\sin^{-1} x is arcsin in most texts and 1/sin x in others).
FUNCTIONS = {"\\sin": math.sin, "\\cos": math.cos, "\\tan": math.tan, "\\sec": _sec,
             "\\csc": _csc, "\\cot": _cot, "\\ln": math.log, "\\exp": math.exp}
_COMMANDS = ("frac", "sqrt", "pi", "cdot", "times", "div", "infty", "ldots", "binom",
             *(f[1:] for f in FUNCTIONS), *GREEK)
_BY_LENGTH = tuple(sorted(_COMMANDS, key=len, reverse=True))  # `\sigmax` is \sigma x, not \sin
_REFUSED_PREFIXES = ("sinh", "cosh", "tanh", "sech", "csch", "coth")  # not \sin h
_VARIABLES = frozenset("\\" + g for g in GREEK)
_ATOM_STARTS = frozenset(("(", "{", "\\frac", "\\sqrt", "\\pi", "\\infty", *FUNCTIONS,
                          *_VARIABLES))
# Function names in plain text, as some datasets store a gold (`3*sqrt(3)`, `4*pi`): the
# LaTeX command. A whole word only (not the `pi` of `spin`; `pir` is p*i*r).
PLAIN_NAMES = ("sqrt", "pi", "sin", "cos", "tan", "ln", "exp")
_TOKEN_RE = re.compile(
    r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,6}(?!\d))?"  # 12, 1.5, .5, 1.2e5
    r"|\\[a-zA-Z]+"  # commands
    r"|(?<![a-zA-Z\\])(?:%s)(?![a-zA-Z])" % "|".join(PLAIN_NAMES) +  # sqrt(3), 4*pi
    r"|[a-zA-Z](?:_(?:\{[a-zA-Z0-9]+\}|\d+|[a-zA-Z]))?"  # x, x_1, x_{ij}, a_i (a_ib_i: two)
    r"|\S")

_NAMES = re.compile(r"\\[a-zA-Z]+|(?<![a-zA-Z\\])(?:%s)(?![a-zA-Z])" % "|".join(PLAIN_NAMES))


def tokenize(s: str) -> list[str]:
    toks: list[str] = []
    for m in _TOKEN_RE.finditer(s):
        t = m.group(0)
        if t.startswith("\\") and len(t) > 1 and t[1].isalpha():
            name = t[1:]
            if name.startswith(_REFUSED_PREFIXES):
                raise Refuse(t)
            while name not in _COMMANDS:  # `\pix` (spaces removed) is \pi x
                for c in _BY_LENGTH:
                    if name.startswith(c):
                        toks.append("\\" + c)
                        name = name[len(c) :]
                        break
                else:
                    raise Refuse(t)
                if not name:
                    break
                if not name.startswith(_COMMANDS):
                    toks.extend(name)  # trailing letters are variables
                    name = ""
                    break
            if name:
                toks.append("\\" + name)
            continue
        if t in PLAIN_NAMES:
            toks.append("\\" + t)
            continue
        toks.append(t.replace("{", "").replace("}", "") if "_{" in t else t)  # x_{1} is x_1
    return toks


def number(tok: str, exp: int = 0) -> Fraction:
    """Exact value of a decimal literal times 10^exp (digits bounded before int())."""
    if len(tok) > MAX_LITERAL_DIGITS or abs(exp) > MAX_EXPONENT:
        raise Refuse("literal too long")
    ip, _, fp = tok.partition(".")
    value = Fraction(int((ip or "0") + fp), 10 ** len(fp)) if fp else Fraction(int(ip or "0"))
    return value * Fraction(10) ** exp if exp else value


def _check(x):
    if isinstance(x, Fraction):
        if x.numerator.bit_length() > MAX_BITS or x.denominator.bit_length() > MAX_BITS:
            raise Refuse("too big")
    elif isinstance(x, float):
        if x != x:
            raise Refuse("nan")
    else:
        raise Refuse("complex")
    return x


def _exact_root(x: Fraction, n: int) -> Fraction | None:
    """x^(1/n) when it is rational, else None (x >= 0)."""
    out = []
    for v in (x.numerator, x.denominator):
        r = round(v ** (1.0 / n)) if v.bit_length() < 1000 else None
        if r is None:
            return None
        for c in (r - 1, r, r + 1):
            if c >= 0 and c**n == v:
                out.append(c)
                break
        else:
            return None
    return Fraction(out[0], out[1])


def _root(x, n):
    if isinstance(n, Fraction) and n.denominator == 1 and 1 <= n <= 64:
        n = int(n)
    else:
        raise Refuse("root index")
    if x < 0:
        if n % 2 == 0:
            raise Refuse("even root of a negative")
        return -_root(-x, Fraction(n))
    if isinstance(x, Fraction):
        r = _exact_root(x, n)
        if r is not None:
            return r
    return float(x) ** (1.0 / n)


def _pow(b, e):
    if isinstance(e, Fraction) and e.denominator == 1:
        k = int(e) if abs(e.numerator) <= MAX_EXPONENT else None
        if isinstance(b, Fraction):
            if b in (0, 1) or k is not None and b == -1:
                return b**k if k is not None else (b if e > 0 else Fraction(1) / b)
            if k is None:
                raise Refuse("exponent too large")
            bits = max(b.numerator.bit_length(), b.denominator.bit_length())
            if bits * abs(k) > MAX_BITS:
                raise Refuse("power too large")
            return b**k
        if k is None:
            raise Refuse("exponent too large")
        return math.pow(b, k)
    if isinstance(e, Fraction) and isinstance(b, Fraction) and b >= 0 and e.denominator <= 64:
        r = _exact_root(b, e.denominator)
        if r is not None:
            return _pow(r, Fraction(e.numerator))
    if b < 0:
        raise Refuse("negative base, non-integer exponent")
    return math.pow(float(b), float(e))


class Parser:
    """Recursive descent over tokens -> value, with variables bound by env.

    expr  := term (('+'|'-') term)*
    term  := unary (('*'|'/'|\\cdot|\\times|\\div|<implicit>) unary)*
    unary := ('-'|'+') unary | power
    power := postfix ('^' unary)?
    postfix := atom '!'*
    atom  := number | var | \\pi | e | \\infty | (expr) | {expr} | [expr]
           | \\frac arg arg | \\sqrt([expr])? arg
    """

    def __init__(self, toks: list[str], env: dict):
        self.t, self.i, self.env, self.depth = toks, 0, env, 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise Refuse("unexpected token")
        self.i += 1
        return tok

    def deeper(self):
        """One level of nesting more (the caller steps back with self.depth -= 1)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Refuse("too deep")

    def run(self):
        v = self.expr()
        if self.peek() is not None:
            raise Refuse("trailing tokens")
        return v

    def expr(self):
        self.deeper()
        v = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            w = self.term()
            v = _check(v + w if op == "+" else v - w)
        self.depth -= 1
        return v

    def _starts_atom(self, tok: str | None) -> bool:
        if tok is None:
            return False
        return (tok[0].isdigit() or tok[0] == "." and len(tok) > 1 or tok[0].isalpha()
                or tok in _ATOM_STARTS)

    def term(self):
        v = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "/", "\\cdot", "\\times", "\\div"):
                self.take()
                w = self.unary()
                if tok in ("/", "\\div"):
                    if w == 0:
                        raise Refuse("division by zero")
                    v = _check(v / w)
                else:
                    v = _check(v * w)
            elif self._starts_atom(tok):
                v = _check(v * self.power())
            else:
                return v

    def unary(self):
        tok = self.peek()
        if tok in ("-", "+"):
            self.take()
            self.deeper()
            v = self.unary()
            self.depth -= 1
            return -v if tok == "-" else v
        return self.power()

    def power(self):
        v = self.postfix()
        if self.peek() == "^":
            self.take()
            self.deeper()
            e = self.unary()
            self.depth -= 1
            v = _check(_pow(v, e))
        return v

    def postfix(self):
        v = self.atom()
        while self.peek() == "!":
            self.take()
            if not (isinstance(v, Fraction) and v.denominator == 1 and 0 <= v <= MAX_FACTORIAL):
                raise Refuse("factorial")
            v = Fraction(math.factorial(int(v)))
        return v

    def function(self, name: str):
        """\\sin x, \\sin(x), \\sin 2x = sin(2x), \\sin^2 x = (\\sin x)^2, \\sin x \\cos y.

        A bracketed argument ends at its bracket (`\\sin(x)^2` is (\\sin x)^2); an unbracketed
        one takes the juxtaposed numbers, letters and powers up to the next operator, bracket
        or function (`\\sin 2x + 1` is sin(2x) + 1). A power right after the name must be a
        whole number from 1 to 16: `\\sin^{-1}` is refused, not guessed.
        """
        self.deeper()
        k = 1
        if self.peek() == "^":
            self.take()
            p = self.unary()
            if not (isinstance(p, Fraction) and p.denominator == 1 and 1 <= p <= 16):
                raise Refuse("power of a function")
            k = int(p)
        if self.peek() in ("(", "{"):
            x = self.atom()
        else:
            x = self.power()
            while self.peek() is not None and self.peek() not in ("(", "{") and (
                    self.peek() not in FUNCTIONS and self._starts_atom(self.peek())):
                x = _check(x * self.power())
        self.depth -= 1
        return _check(FUNCTIONS[name](x)) ** k

    def group(self, close: str):
        v = self.expr()
        self.take(close)
        return v

    def arg(self):
        if self.peek() == "{":
            self.take()
            return self.group("}")
        return self.atom()

    def atom(self):
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            if tok == ".":
                raise Refuse("lone dot")
            mant, _, exp = tok.replace("E", "e").partition("e")  # 1.2e5 is not 1.2*e*5
            return number(mant, int(exp) if exp else 0)
        if tok in ("(", "{", "["):
            return self.group({"(": ")", "{": "}", "[": "]"}[tok])
        if tok == "\\frac":
            num = self.arg()
            den = self.arg()
            if den == 0:
                raise Refuse("division by zero")
            return _check(num / den)
        if tok == "\\sqrt":
            n = Fraction(2)
            if self.peek() == "[":
                self.take()
                n = self.group("]")
            return _check(_root(self.arg(), n))
        if tok == "\\binom":
            n, k = self.arg(), self.arg()
            if not all(isinstance(v, Fraction) and v.denominator == 1 for v in (n, k)):
                raise Refuse("binomial of a non-integer")
            if not 0 <= n <= MAX_BINOM_N:
                raise Refuse("binomial too large")
            return Fraction(math.comb(int(n), int(k)) if k >= 0 else 0)
        if tok == "\\pi":
            return math.pi
        if tok == "\\infty":
            return math.inf
        if tok in FUNCTIONS:
            return self.function(tok)
        if tok in _VARIABLES:
            if tok in self.env:
                return self.env[tok]
            raise Refuse("unbound variable")
        if tok[0].isalpha():
            if tok in self.env:
                return self.env[tok]
            if tok == "e":
                return math.e
            raise Refuse("unbound variable")
        raise Refuse("unexpected token")


def variables(toks: list[str]) -> tuple[str, ...]:
    names = {t for t in toks if t[0].isalpha() and t != "e" or t in _VARIABLES}
    return tuple(sorted(names))


# Three fixed evaluation points for answers with variables (exact rationals, no symmetry).
# Positive, so that \sqrt{x} and x^{1/2} are defined at every point.
POINT_VALUES = [Fraction(13, 7), Fraction(5, 3), Fraction(11, 4), Fraction(3, 11),
                 Fraction(17, 5), Fraction(7, 9), Fraction(19, 6), Fraction(2, 13)]


def points(names: tuple[str, ...]) -> list[dict]:
    return [{v: POINT_VALUES[(3 * i + k) % len(POINT_VALUES)] for i, v in enumerate(names)}
            for k in range(3)]


def expr_value(s: str):
    """('num', value) or ('expr', toks, variables); raises Refuse if not arithmetic."""
    if re.search(r"[a-zA-Z]{3,}", _NAMES.sub(" ", s)):
        raise Refuse("a word, not a formula")
    toks = tokenize(s)
    if not toks or len(toks) > 400:
        raise Refuse("empty or too long")
    names = variables(toks)
    if len(names) > 4:
        raise Refuse("too many variables")
    if not names:
        return ("num", Parser(toks, {}).run())
    return ("expr", tuple(toks), names)
