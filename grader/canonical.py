"""An extracted answer written in one canonical form: normalize (and split_top, forbidden).

Both sides of every comparison go through normalize; verifier.py parses and compares what it
returns. The choices made here (thousands separators, units, labels before `=`, lists, option
letters, characters that are refused rather than repaired) are listed in verifier.py's
docstring. Standard library only.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from fractions import Fraction

MAX_ANSWER_CHARS = 1000  # longer answers are compared as exact strings only
# a plain decimal number: the fast path of normalize and of verifier's values
PLAIN_NUMBER = re.compile(r"-?(?:\d{1,300}(?:\.\d{0,300})?|\.\d{1,300})", re.ASCII)

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "\\times ", "\u22c5": "\\cdot ",
    "\u00b7": "\\cdot ", "\u00f7": "\\div ", "\u03c0": "\\pi ", "\u221e": "\\infty ",
    "\u221a": "\\sqrt", "\u2264": "\\le ", "\u2265": "\\ge ", "\u00b0": "^\\circ ",
    "\u00b1": "\\pm ", "\u222a": "\\cup ", "\u2260": "\\ne ", "\u2248": "\\approx ",
    "\u20ac": "", "\u00a3": "", "\u00a5": "", "\u20b9": "",  # currencies: € £ ¥ ₹, like \\$
}
_SUPER_DIGITS = str.maketrans("\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079",
                              "0123456789")
_SUPERSCRIPTS = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+")  # x² -> x^{2}
_SUB_DIGITS = str.maketrans("\u2080\u2081\u2082\u2083\u2084\u2085\u2086\u2087\u2088\u2089",
                            "0123456789")
_SUBSCRIPTS = re.compile("[\u2080-\u2089]+")  # x₁ -> x_{1}, not x*1
_UNICODE_ROOT = re.compile(r"\u221a\s*(\d+(?:\.\d+)?)")
_PRE_NFKC = {"\u211d": "\\mathbb{R}"}  # ℝ, which NFKC would turn into a bare R
_PERCENT_WORD = re.compile(r"(?<=\d)\s*(?:percent|pct)\b", re.IGNORECASE)
_TEXT_CMDS = re.compile(
    r"\\(?:text|textnormal|textbf|textit|textrm|textsf|texttt|mathrm|mathbf|mathit|mathsf|mbox|"
    r"operatorname|boldsymbol|mathnormal|hbox)\s*\{"
)
_DROP = [
    ("\\left", ""), ("\\right", ""), ("\\bigl", ""), ("\\bigr", ""), ("\\Bigl", ""),
    ("\\Bigr", ""), ("\\big", ""), ("\\Big", ""), ("\\displaystyle", ""), ("\\!", ""),
    ("\\,", ""), ("\\:", ""), ("\\;", ""), (",\\,", ", "), (",\\:", ", "), (",\\;", ", "),
    ("\\qquad", " "), ("\\quad", " "), ("\\ ", " "),
    ("~", " "), ("{,}", ","), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"),
    ("\\cfrac", "\\frac"), ("^{\\circ}", ""), ("^\\circ", ""), ("\\circ", ""),
    ("\\degree", ""), ("\\$", ""), ("\\euro", ""), ("\\texteuro", ""), ("\\pounds", ""),
    ("\\textsterling", ""), ("\\yen", ""), ("\\textyen", ""), ("$", ""), ("\\%", "%"),
    ("\\leq", "\\le"), ("\\geq", "\\ge"), ("\\neq", "\\ne"), ("\\lt", "<"), ("\\gt", ">"),
    ("\\infinity", "\\infty"),
    ("\\tfrac", "\\frac"), ("\\dots", "\\ldots"), ("\\colon", ":"),
    ("\\langle", "("), ("\\rangle", ")"),
    (">=", "\\ge"), ("<=", "\\le"), ("!=", "\\ne"),
]
_DROP_MAP = dict(_DROP)
_DROP_RE = re.compile("|".join(re.escape(a) for a in sorted(_DROP_MAP, key=len, reverse=True)))
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?:[eE][-+]?\d+)?")  # 1,234.5e3
# Digit groups of three joined by LaTeX separators ({,} \, \! ,\! {,}\!), plain commas allowed
# alongside them: 1{,}234{,}567, 1\,234\,567, 12,\!345, 1,234\,567.
_LATEX_GROUPS = re.compile(  # `,\!` may be followed by a space: `10,\! 000` (\! marks grouping)
    r"(?<![\d.])\d{1,3}(?:(?:\{,\}(?:\\! ?)?|,\\! ?|\\!|\\,|,)\d{3}(?!\d))+", re.ASCII)
_OVERLINE = re.compile(r"(?<!\d)(\d*+)\.(\d*+)\\overline\{?(\d{1,30})\}?")
_FRAC_SHORT = [
    (re.compile(r"\\frac\s*(\d)\s*(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac\s*(\d)\s*\{"), r"\\frac{\1}{"),
    (re.compile(r"\\frac\s*\{([^{}]{0,60})\}\s*(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac\s*([a-zA-Z])\s*([a-zA-Z0-9])"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\sqrt\s*(\d)"), r"\\sqrt{\1}"),
    (re.compile(r"\\sqrt\s+([a-zA-Z])"), r"\\sqrt{\1}"),
]
_MIXED = re.compile(r"(?<![\d.}^_])(\d++)\s*\\frac\{(\d+)\}\{(\d+)\}")
# A mixed number in plain text, `5 1/3`: an integer, spaces, then a/b (see _mixed_plain).
_MIXED_PLAIN = re.compile(r"(?<![\w.,^_{}/\\])(\d{1,30}) +(\d{1,30})/(\d{1,30})(?![\w.^_/])",
                          re.ASCII)
_LEADING_VAR = re.compile(
    r"^\s*(?:\\[a-zA-Z]+|[a-zA-Z])(?:_\{?[a-zA-Z0-9]+\}?)?(?:\([a-z]\))?"  # x, \theta, x_1, f(x)
    r"\s*(?:=|\\in(?![a-zA-Z]))\s*(?=\S)")
_TUPLE_IN = re.compile(  # `(a, b) \in ...`: a tuple of variables
    r"\s*\(((?:\s*[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?\s*,)+\s*[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?\s*)\)"
    r"\s*\\in(?![a-zA-Z])\s*(?=\S)")
# A named quantity before `=` that is not a product of variables: a segment or area named by
# capital points (`PQ =`, `[ABC] =`), a length or absolute value (`|PQ| =`), `\overline{AB} =`,
# an angle (`\angle ABC =`, `m\angle A =`) or a ratio of named quantities (`P:Q =`, the ratio
# is the value after `=`; `2:1` itself is not read as a number).
_NAMED_LHS = re.compile(
    r"^\s*(?:[A-Z]{2,4}|\[[A-Z]{2,5}\]|\|[A-Za-z]{1,4}\||\\overline\{[A-Z]{2,4}\}"
    r"|m?\\angle ?[A-Z]{1,3}|[A-Z]{1,3}:[A-Z]{1,3})(?:_\{?[a-zA-Z0-9]+\}?)?\s*=\s*(?=\S)")
# A multiple-choice letter followed by its option's text: `B. y = 17`, `(B) 12`, `C) 3x`, `D: 7`.
# The text may not name another option (`(A) and (C)`, `(B), (C)`, `B. or maybe C` are several
# options: any lone capital A-E) nor start a list.
_OPTION_TEXT = re.compile(r"\s*(?:\(([A-E])\)\s*|([A-E])(?:[.:]\s+|\)\s*))(?=[^\s,;])")
# `option C`, `choice (C)`, `{C}`, `[C]`: the option letter (a gold letter's wrappers)
_OPTION_WORD = re.compile(r"\A(?:option|choice)\s*(?=\(?[A-E](?![A-Za-z]))", re.IGNORECASE)
_BRACKETED_OPTION = re.compile(r"\{\s*\(?([A-E])\)?\s*\}|\[\s*\(?([A-E])\)?\s*\]")
_OTHER_OPTION = re.compile(r"(?<![A-Za-z\\])[A-E](?![A-Za-z])")  # `B. maybe C is right`
_UNIT_POWER = r"(?:\^\{?-?\d\}?)?"
_UNIT_WORD = re.compile(  # km, hrs., ft^2, m/s^{2}, ^{2}/, kg*m, N\cdot m, a lone / or ^2
    r"(?:[A-Za-z]+\.?|\^\{?-?\d\}?|/|\*|\\cdot)+", re.ASCII)
# A degree sign followed by C or F (25^\circ C, 25°C, ℃): the letter is part of the unit.
_DEGREE_UNIT = re.compile(
    r"(\^\{?\\circ\}?|\\degree)\s*(?:\\(?:text|mathrm)\s*\{\s*[CF]\s*\}|[CF](?![A-Za-z]))")
_ONE_LETTER_UNITS = {"m", "g", "s", "h", "l", "L", "K", "J", "N", "W", "V"}
# Two letters are a unit only when listed: `4 xy` and `\\frac12 bh` are products, not units.
_TWO_LETTER_UNITS = {"cm", "mm", "km", "nm", "dm", "kg", "mg", "ml", "mL", "cl", "dl", "cc", "ft",
                     "in", "yd", "mi", "hr", "lb", "oz", "Hz", "kW", "MW", "mW", "kJ", "kN", "Pa",
                     "eV", "mA", "kV", "mV", "ms", "ns", "pt", "qt", "sq", "ha", "am", "pm", "AM",
                     "PM"}
# A number with a scale word: `1.5 million` is 1.5e6 (not 1.5 with a unit), `\text{ billion}` too, and
# `5 thousandths` is 5e-3 (not 5); not before a number (`3 thousand 5` would run together as 3e35).
SCALE_WORDS = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12,
               "tenth": -1, "hundredth": -2, "thousandth": -3, "millionth": -6}
_SCALED = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d{1,30})(\.\d{1,30})?\s*(thousandth|thousand|millionth|"
                     r"million|billion|trillion|tenth|hundredth)s?(?![A-Za-z]|\s*\.?\d)", re.IGNORECASE | re.ASCII)
_WORD_SEP = re.compile(r"(?:^|\s)(?:and|or)(?=\s|$)")


def _unwrap_text(s: str) -> str:
    """\\text{...} and friends -> ' ...' (space kept so `5\\text{cm}` reads as '5 cm')."""
    for _ in range(50):
        m = _TEXT_CMDS.search(s)
        if not m:
            break
        depth, j = 1, m.end()
        while j < len(s) and depth:
            if s[j] == "\\":
                j += 2
                continue
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            j += 1
        if depth:
            s = s[: m.start()] + " " + s[m.end() :]
        else:
            s = s[: m.start()] + " " + s[m.end() : j - 1] + " " + s[j:]
    return s


def _join_groups(m: re.Match) -> str:
    """1{,}234\\,567 -> 1234567 when a LaTeX separator is among the separators.

    {,} and \\! between digits are only ever a thousands separator, and \\, is the SI one, so
    a number written with them is one number even where plain commas join other groups
    (`1,234\\,567`). Groups must be three digits (`1\\,23` is not grouped). Plain commas alone
    are left to the whole-answer rule (`(1,000, 2)` stays a triple, `32, 349` a list), and a
    comma followed by a space of any kind (`1,\\,234`) is a list separator, not grouping.
    """
    g = m.group(0)
    return re.sub(r"\D", "", g) if "\\" in g or "{" in g else g


def _overline(m: re.Match) -> str:
    """0.1\\overline{6} -> \\frac{1}{6}: the exact value of a repeating decimal."""
    ip, fixed, rep = m.group(1) or "0", m.group(2), m.group(3)
    value = Fraction(int(ip)) + Fraction(int(fixed or "0"), 10 ** len(fixed))
    value += Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(fixed))
    return "\\frac{%d}{%d}" % (value.numerator, value.denominator)


def _mixed(m: re.Match) -> str:
    whole, num, den = m.group(1), int(m.group(2)), int(m.group(3))
    if 0 < num < den:  # a mixed number only when the fraction is proper
        return "(%s+\\frac{%d}{%d})" % (whole, num, den)
    return m.group(0)


def _mixed_plain(m: re.Match) -> str:
    """`5 1/3` -> (5+\\frac{1}{3}), a mixed number when the fraction is proper. `1 000/3` is
    digit grouping (a three-digit numerator: 1000/3). Otherwise (`5 4/3`, `5 0/3`) neither
    reading is safe, and the answer is left as text (the space kept as `{}`): running the
    digits together (54/3) is the wrong answer a human grader would not read."""
    whole, num, den = m.groups()
    if 0 < int(num) < int(den):
        return _mixed(m)
    return m.group(0) if len(num) == 3 else whole + "{}" + num + "/" + den


def encloses(s: str) -> bool:
    """True when the bracket at s[0] closes at s[-1] (mixed types allowed: `[1, 2)`)."""
    depth = 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
    return False


def split_top(s: str, seps: str = ",") -> list[str]:
    """Split at separators outside (), [], {}."""
    if not any(c in s for c in seps):
        return [s]
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c in seps and depth == 0:
            parts.append(s[start:i])
            start = i + 1
        i += 1
    parts.append(s[start:])
    return parts


def _unit_piece(p: str) -> bool:
    return len(p) >= 3 or p in _TWO_LETTER_UNITS or p in _ONE_LETTER_UNITS


def _strip_units(item: str) -> str:
    """'5 cm' -> '5', '10 square units' -> '10', '60 km/h' -> '60': trailing unit words after a
    number (letters, with powers `^2` and compounds joined by `/`, `*` or `\\cdot`).

    At least one word must look like a unit (three or more letters, or a listed one- or
    two-letter unit such as m, h, cm, ft), so `2 x` and `4 xy` keep their variables. In a
    compound every letter run must look like one: `60 km/h` and `9.8 m/s^2` lose their unit,
    `5 x/y` stays an expression. The tail must start with a letter: `2 \\cdot h` is a product.
    """
    words = item.split()
    k = len(words)
    while k > 1 and _UNIT_WORD.fullmatch(words[k - 1]):
        k -= 1
    if k == len(words) or k == 0 or not words[k][0].isalpha():
        return item
    unit = " ".join(words[k:])
    if any(w.lower().rstrip("s.") in SCALE_WORDS for w in words[k:]):
        return item  # `3 thousand 5` left unread (see _SCALED) is not 3 with a unit
    pieces = re.findall(r"[A-Za-z]+", unit.replace("\\cdot", " "))
    if not pieces or not any(map(_unit_piece, pieces)):
        return item
    if re.search(r"[/*]|\\cdot", unit) and not all(map(_unit_piece, pieces)):
        return item
    head = " ".join(words[:k])
    if re.search(r"[\d})]$|\\pi$", head) and re.search(r"\d|\\pi", head):
        return head
    return item


def _top_count(item: str, ch: str) -> int:
    """How many times ch occurs outside brackets (`\\sum_{i=1}^n` has no top-level `=`)."""
    return len(split_top(item, ch)) - 1 if ch in item else 0


def _tuple_in(item: str) -> str:
    """`(a, b) \\in \\{(3, 1), (5, 1)\\}` -> the set: labels distinct and in alphabetical order
    (as for `(x, y) = (7, 6)`, see verifier._labelled_tuple); otherwise unchanged."""
    m = _TUPLE_IN.match(item)
    if not m:
        return item
    labels = [x.strip() for x in m.group(1).split(",")]
    if len(set(labels)) != len(labels) or labels != sorted(labels):
        return item
    return item[m.end() :]


def _normalize_item(item: str, keep_lhs: bool = False) -> str:
    if "\\approx" in item:  # an exact value before its approximation is the answer:
        head, _, tail = item.partition("\\approx")  # `\frac{\sqrt2}{2} \approx 0.707` -> the
        tail = tail.split("\\approx")[0].strip()  # fraction; `x = 1/3 \approx 0.33` -> 1/3
        if head.strip() and ("=" in head or head.strip() in ("\\pi", "e") or not any(
                p.match(head + "=0") for p in (_LEADING_VAR, _NAMED_LHS))):
            item = head
        else:  # `x \approx 11` -> 11
            item = head + "=" + tail
    eqs = _top_count(item, "=")
    if eqs >= 2:  # "x = 5+5+1 = 11": the last side is the answer
        item = split_top(item, "=")[-1]
    if "\\in" in item and item.lstrip().startswith("("):
        item = _tuple_in(item)
    if (eqs == 1 and not keep_lhs) or "\\in" in item:
        item = _LEADING_VAR.sub("", item, count=1)
        if eqs == 1 and not keep_lhs:
            item = _NAMED_LHS.sub("", item, count=1)  # `PQ = 3` -> 3, `|PQ| = 2` -> 2
    item = _strip_units(item.strip()) if " " in item else item
    return "".join(item.split())


def _labelled_group(part: str) -> str:
    """`a=3,b=1` -> `(3,1)`: one solution of a system written with its variables' names, the
    names distinct and in alphabetical order (the order a bare tuple is read in). Anything else
    is returned unchanged."""
    pairs = [p.partition("=") for p in split_top(part)]
    names = [n.strip() for n, eq, _ in pairs]
    if len(pairs) < 2 or not all(eq and v.strip() for _, eq, v in pairs):
        return part
    if not all(re.fullmatch(r"[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?", n) for n in names):
        return part
    if len(set(names)) != len(names) or names != sorted(names):
        return part
    return "(" + ",".join(v.strip() for _, _, v in pairs) + ")"


def _solution_groups(s: str) -> str:
    """Items separated by top-level `;` are one list; when an item is itself a comma list of
    labelled values (`a=3,b=1;a=5,b=1`), each item is one tuple: `(3,1),(5,1)`. Groups joined
    by "and" / "or" are read the same way when every group is labelled
    (`a=3, b=1 or a=5, b=1`)."""
    if ";" in s:
        parts = split_top(s, ";")
        if len(parts) < 2 or not all(p.strip() for p in parts):
            return s
        return ",".join(_labelled_group(p.strip()) for p in parts)
    parts = _WORD_SEP.split(s)
    if len(parts) < 2:
        return s
    groups = [_labelled_group(p.strip()) for p in parts]
    return ",".join(groups) if all(g != p.strip() for g, p in zip(groups, parts)) else s


def _bare_brace_set(s: str) -> str:
    """`{1, 2}` written without backslashes (LaTeX would drop the braces) is the set {1, 2}
    when it holds a top-level comma; `{1,000}` is the number 1000."""
    inner = s[1:-1]
    if _THOUSANDS.fullmatch(inner.strip()):
        return inner
    if len(split_top(inner)) < 2:
        return s
    return "\x01" + inner + "\x02"


def forbidden(s: str) -> bool:
    """Whether an answer holds characters we refuse to repair (the answer is then never equal).

    A verifier in an RL loop must not reward text that is not the answer, so characters that
    a naive normaliser would strip or fold into a digit make the answer wrong instead:
      - control characters other than tab / newline / carriage return (a NUL in `4\\x002`
        must not become 42; also DEL and C1 controls),
      - format characters (category Cf): zero-width space / joiners, word joiner, BOM, soft
        hyphen, invisible operators, and every bidi mark, embedding, override and isolate (an
        override can show `24` as `42`),
      - surrogates, private-use and unassigned code points,
      - number symbols that are labels, not numbers: circled, parenthesised and full-stop digits
        (`①`, `⑴`, `⒈`) and `⅟`. Superscript digits (powers), subscript digits (indices) and
        vulgar fractions (`½`, `2¾`) keep their meaning and are not refused,
      - a run of decimal digits mixing scripts (`1٢`, `1２`): no writer mixes them in one number.
    Decimal digits of one other script (Arabic-Indic `١٢`, fullwidth `１２`, Devanagari) are
    the number they spell and are accepted by value. Letters that look like digits (`O`, `l`,
    Cyrillic `З`) are letters: they are never read as digits, so `1O` is not 10.
    """
    if s.isascii() and s.isprintable():
        return False
    zero = None  # code point of the digit 0 of the script of the current digit run
    for ch in s:
        if ch < " " or "\x7f" <= ch < "\xa0":
            if ch not in "\t\n\r":
                return True
            zero = None
            continue
        cat = unicodedata.category(ch)
        if cat == "Nd":
            z = ord(ch) - unicodedata.digit(ch)
            if zero is not None and z != zero:
                return True
            zero = z
            continue
        zero = None
        if cat in ("Cf", "Cs", "Co", "Cn"):
            return True
        if cat == "No" and not ("\u2070" <= ch <= "\u2089" or ch in "\u00b9\u00b2\u00b3"
                                or "\u2044" in unicodedata.normalize("NFKC", ch)[1:-1]):
            return True
    return False


def _vulgar(ch: str) -> str:
    """½ -> \\frac{1}{2} (so that 2½ reads as the mixed number, not 21/2); other chars as is."""
    if unicodedata.category(ch) != "No":
        return _PRE_NFKC.get(ch, ch)
    num, _, den = unicodedata.normalize("NFKC", ch).partition("\u2044")
    return "\\frac{%s}{%s}" % (num, den) if num.isdigit() and den.isdigit() else ch


@functools.lru_cache(maxsize=4096)  # a group's G responses share one gold; answers repeat
def normalize(answer: str, keep_lhs: bool = False) -> str:
    """Canonical string form of an answer (both sides of a comparison go through this).

    Examples: '\\dfrac12' -> '\\frac{1}{2}', '$1{,}000$' -> '1000', 'x = 5 \\text{ cm}' -> '5',
    '45^\\circ' -> '45', '2\\frac14' -> '(2+\\frac{1}{4})', '3 and 4' -> '3,4'.
    keep_lhs keeps a leading `y =` (for comparing equations of curves, see _same_curve).
    Answers longer than MAX_ANSWER_CHARS are only stripped; answers with a character that
    forbidden refuses normalise to '' (equal to nothing).
    """
    if forbidden(answer):
        return ""
    s = answer.strip()
    if len(s) > MAX_ANSWER_CHARS or PLAIN_NUMBER.fullmatch(s):
        return s
    if not (s.isascii() and s.isprintable()):  # the slow path only for unusual characters
        s = "".join(map(_vulgar, s))
        s = _SUBSCRIPTS.sub(lambda m: "_{%s}" % m.group(0).translate(_SUB_DIGITS), s)
        s = _SUPERSCRIPTS.sub(lambda m: "^{%s}" % m.group(0).translate(_SUPER_DIGITS), s)
        s = _UNICODE_ROOT.sub(r"\\sqrt{\1}", s)  # √12 is sqrt(12), unlike \sqrt12
        s = unicodedata.normalize("NFKC", s)
        s = "".join(_UNICODE.get(ch, str(unicodedata.digit(ch, "")) if ch.isdigit()
                                 and not ch.isascii() else ch) for ch in s)
    if "circ" in s or "\\degree" in s:
        s = _DEGREE_UNIT.sub(r"\1", s)
    if "{,}" in s or "\\," in s or "\\!" in s:
        s = _LATEX_GROUPS.sub(_join_groups, s)
    if "\\" in s or "$" in s or "~" in s or "{" in s or "=" in s:  # each _DROP key has one
        s = s.replace("\\\\", "\x03")  # matrix row separator, kept apart from "\ "
        s = _DROP_RE.sub(lambda m: _DROP_MAP[m.group(0)], s)  # one pass, longest match first
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[7:-1]
    s = _unwrap_text(s)
    if any(w in s for w in ("illion", "housand", "ILLION", "HOUSAND", "enth", "ENTH", "undredth", "UNDREDTH")):
        s = _SCALED.sub(lambda m: "%s%se%d" % (m[1], m[2] or "", SCALE_WORDS[m[3].lower()]), s)
    s = s.replace("\\{", "\x01").replace("\\}", "\x02")  # keep set braces apart from groups
    s = s.strip().rstrip(".").strip()
    if s.endswith(("\\", "\x03")):  # a stray backslash after the answer: `5\\`, a line break
        s = s.rstrip("\\\x03").rstrip()
    if "\\overline" in s:
        s = _OVERLINE.sub(_overline, s)
    if "\\frac" in s or "\\sqrt" in s:
        for pat, rep in _FRAC_SHORT:
            s = pat.sub(rep, s)
        s = _MIXED.sub(_mixed, s)
    if "/" in s and " " in s:
        s = _MIXED_PLAIN.sub(_mixed_plain, s)
    if s[:1] in "oOcC[{":
        s = _OPTION_WORD.sub("", s, count=1) if s[:1] in "oOcC" and len(s) > 6 else s
        m = _BRACKETED_OPTION.fullmatch(s)
        if m:
            return "(" + (m.group(1) or m.group(2)) + ")"
    m = _OPTION_TEXT.match(s) if s[:1] in "(ABCDE" else None
    if m and len(s) > m.end() and not _OTHER_OPTION.search(s, m.end()):  # `B. y = 17` is B
        return "(" + (m.group(1) or m.group(2)) + ")"
    if s.startswith("{") and s.endswith("}") and encloses(s):
        s = _bare_brace_set(s)
    if _THOUSANDS.fullmatch(s.strip()):
        s = s.replace(",", "")
    if ";" in s or "=" in s and _WORD_SEP.search(s):
        s = _solution_groups(s)
    s = _WORD_SEP.sub(",", s)
    if "pe" in s or "pc" in s or "PE" in s:
        s = _PERCENT_WORD.sub("%", s)  # "28 percent" is 28%
    items = [_normalize_item(x, keep_lhs) for x in split_top(s)]
    out = ",".join(x for x in items if x) if len(items) > 1 else items[0]
    return out.replace("\x01", "\\{").replace("\x02", "\\}").replace("\x03", "\\\\")
