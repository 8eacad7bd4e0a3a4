"""The lenient reading of a solution's conclusion: verify(response, gold, lenient=True).

For grading other models' outputs, not for the RL reward. The default verify() pays only an
answer that is boxed or explicitly marked; a solution that ends "so the probability that she
wins is 3/5." has neither. With lenient=True such an unmarked answer is read from the
conclusion, the way a human grader reads it:

  0. A short response with no word outside math (no run of two letters: `$0.0833$`, `x + 1`,
     `(1, 4.5)`, `$28$ %`) is all answer, as a bare answer is read.
  1. The sentence read is the one holding the last "answer" (outside math), else the final
     sentence. Trailing sentences with no number and no math ("I hope it is correct.", "Is
     that right?") are skipped, at most two; a question with values is no conclusion (None).
     Math blocks ($..$, \\(..\\), $$..$$, \\[..\\], align/equation environments) are one
     piece each, so a sentence may end in a display block ("so the area is \\[ 12 \\]").
  2. An explanation after the answer is cut off (", which is more than 1/2", ", since ...");
     "which is" followed right away by a value restates the answer and is kept ("the total
     is 10 kg, which is 10,000 g" -> 10,000 g, the last form).
  3. The answer is what follows the last "so / therefore / thus / hence", then the last
     "is / are / was / equals / = / be", that has a candidate after it ("with 5 red balls,
     the probability is 3/8" -> 3/8), else the whole sentence. A sentence that ends by
     rejecting its value ("10 is wrong", "x = 4 is not possible") states no answer.
  4. Candidates are math blocks, numbers written in prose (3/5, 1,000, -2.5, 40%, 2.998e8
     with its exponent, the mixed number `5 1/3`, `1.5 million` with its scale word, and
     `\\frac{3}{5}` or `2\\sqrt{3}` without delimiters) and option letters ("(B)", "option
     C", a capital letter ending the sentence); one right after "not", "instead of", "rather
     than" is dropped ("not 10 but 12" -> 12), and so is the rest of a list it starts
     ("$2,4,8$ is correct, not 3,5,7" -> 2,4,8). The part after the last copula is read only if it
     keeps a candidate.
  5. One candidate is the answer. Several are one list answer only when nothing but commas,
     "and", "or" stands between them ("are 2 and 3"); otherwise the reading is ambiguous and
     there is no answer (None): "if 3 people share 12 apples, each gets 4" restates the
     problem's numbers, and "it could be 3, or maybe 5" hedges.

verify() also tries, for a candidate `name = value`, the value (`P(A) = 3/5`), and for a
computation with its result, the result (`|4-9| = 5`: no variable on either side; equation_sides).
Standard library only; the reading looks at the last MAX_TAIL characters, every scan is
bounded, and nothing here raises.
"""

from __future__ import annotations

import re

from grader.canonical import normalize

MAX_TAIL = 3000  # only the end of a response is read
MAX_BLOCK = 1000  # a math block longer than this is left as text
MAX_CANDIDATES = 8
MAX_BARE = 300  # a response this short with no word (2+ letters) is all answer: `x + 1`
_ENVS = ("align", "align*", "equation", "equation*", "gather", "gather*", "eqnarray",
         "eqnarray*", "aligned")
_MATH_OPENERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_EXPLANATION = re.compile(r",?\s+(which|since|because|as|so that|where)\s")
_RESTATED = re.compile(r"\s*(?:is|equals|means|gives|simplifies to)?\s*")
_COPULA = re.compile(r"(?<![A-Za-z])(?:is|are|was|were|equals|equal to|be)(?![A-Za-z])|=")
# A number in prose: 1,000, -2.5, 3/5, 40%, e-notation with its exponent (2.998e8, 6.0E-23),
# and a plain mixed number `5 1/3` (normalize reads it, proper fractions only; see canonical).
_NUMBER = re.compile(r"(?<![\w.^_])-?(?:\d{1,30} \d{1,30}/\d{1,30}(?![\d/])|(?:\d{1,3}(?:,\d{3})++|\d++)"
                     r"(?:\.\d++)?(?:[eE][-+]?\d{1,4}(?!\w|\.\d)|(?:/\d++(?:\.\d++)?)?%?"
                     r"(?![eE][-+]?\d)))", re.ASCII)  # `1e5x`: no number, not 1
_SCALE = re.compile(r" (?:thousandth|thousand|millionth|million|billion|trillion|tenth|hundredth)s?(?![A-Za-z])", re.I)  # 1.5 million
# An option letter in prose: `(B)`, or a capital after "option" / "choice" ("choice B").
_OPTION = re.compile(r"(?<![A-Za-z])\([A-E]\)(?![A-Za-z])|(?<=[Oo]ption )[A-E](?![A-Za-z])"
                     r"|(?<=[Cc]hoice )[A-E](?![A-Za-z])|(?<= )[A-E](?=[.!]?\s*$)")
# An option letter followed by its option's value, `C: 6.5 N`, `(C) 6.5 N`: read as the letter
# when the gold is a letter (conclusion(..., letter=True)), if no other letter follows.
_OPTION_VALUE = re.compile(r"\s*(?:(?:[Oo]ption|[Cc]hoice)\s+)?(?:\(([A-E])\)|([A-E]):)\s*(?=\S)")
_OTHER_LETTER = re.compile(r"(?<![A-Za-z\\])[A-E](?![A-Za-z])")
_PIECE = re.compile("\x00(\\d+)\x00")
# A fraction or root written in prose without math delimiters: `is \frac{3}{5}.`
_BARE_LATEX = re.compile(r"-?(?<![\w.])(?:\d+(?:\.\d+)?)?"
                         r"\\(?:[dt]?frac\{[^{}]{1,40}\}\{[^{}]{1,40}\}|sqrt\{[^{}]{1,40}\})")
_THEREFORE = re.compile(r"(?:^|[,;]\s*|\s)(?:so|therefore|thus|hence)(?![A-Za-z])\s*,?", re.I)
_REJECTED = re.compile(r"\s*(?:not|never|wrong|incorrect|false|invalid|impossible|extraneous|"
                       r"rejected|a mistake|an error|too (?:big|small|large))(?![A-Za-z])", re.I)
_NEGATED = re.compile(r"(?:\bnot|n't|\binstead of|\brather than|\bexcept|\bnever)\s*$", re.I)
_PROSE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")  # a word (not a \command such as \frac)
_LIST_GAP = re.compile(r"[\s,;]*(?:(?:and|or)(?![A-Za-z]))?[\s,;]*")


def _math_pieces(tail: str) -> tuple[str, list[str]]:
    """tail with every math block replaced by \\x00k\\x00, and the blocks' contents."""
    out, pieces, i, n = [], [], 0, len(tail)
    while i < n:
        c = tail[i]
        if c == "\\" and tail.startswith("\\$", i):  # an escaped dollar is currency, not math
            out.append("\\$")
            i += 2
            continue
        if c not in "$\\":  # plain text up to the next `$` or backslash
            j = min((k for k in (tail.find("$", i), tail.find("\\", i)) if k >= 0), default=n)
            out.append(tail[i:j])
            i = j
            continue
        closer, start = None, i
        if tail.startswith("\\begin{", i):
            name = tail[i + 7 : tail.find("}", i, i + 30)] if "}" in tail[i : i + 30] else ""
            if name in _ENVS:
                closer, start = "\\end{" + name + "}", i + 8 + len(name)
        else:
            for opener, close in _MATH_OPENERS:
                if tail.startswith(opener, i):
                    closer, start = close, i + len(opener)
                    break
        k = tail.find(closer, start, start + MAX_BLOCK) if closer else -1
        while closer == "$" and k > 0 and tail[k - 1] == "\\":  # `\$` inside is currency
            k = tail.find(closer, k + 1, start + MAX_BLOCK)
        if k < 0 or closer in ("$", "\\)") and "\n" in tail[start:k]:
            out.append(c)
            i += 1
            continue
        out.append("\x00%d\x00" % len(pieces))
        pieces.append(tail[start:k])
        if closer not in ("$", "\\)") and tail[start:k].rstrip().endswith("."):
            out.append(".")  # a display ending in a full stop ends its sentence
        i = k + len(closer)
    return "".join(out), pieces


def _candidates(part: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of the math pieces and prose numbers in part, in order."""
    found = [(m.start(), m.end(), "piece") for m in _PIECE.finditer(part)]
    found += [(m.start(), m.end(), "number") for m in _BARE_LATEX.finditer(part)]
    prose = _BARE_LATEX.sub(lambda m: " " * len(m.group(0)), part)
    prose = _PIECE.sub(lambda m: " " * len(m.group(0)), prose)
    for m in _NUMBER.finditer(prose):
        whole, _, frac = m.group(0).partition(" ")
        num, _, den = frac.partition("/")
        if frac and not (0 < int(num) < int(den) or len(num) == 3):  # `5 4/3`: two values
            found += [(m.start(), m.start() + len(whole), "number"),
                      (m.end() - len(frac), m.end(), "number")]
        else:  # with its scale word, `1.5 million` (canonical.SCALE_WORDS)
            scale = _SCALE.match(prose, m.end()) if m.group(0)[-1:].isdigit() else None
            found.append((m.start(), scale.end() if scale else m.end(), "number"))
    found += [(m.start(), m.end(), "number") for m in _OPTION.finditer(prose)]
    return sorted(found)


def _piece_text(piece: str) -> str:
    """A math block as an answer: the last row of a multi-line display, `&` removed."""
    if "\\begin{" in piece:  # a matrix or array keeps its rows and columns
        return piece.strip().rstrip(".,;").strip()
    if "\\\\" in piece:
        rows = [r for r in piece.split("\\\\") if r.strip()]
        piece = rows[-1] if rows else ""
    return piece.replace("&", " ").strip().rstrip(".,;").strip()


def _has_candidate(part: str) -> bool:
    return bool(_PIECE.search(part) or _NUMBER.search(part) or _OPTION.search(part)
                or _BARE_LATEX.search(part))


def _kept(part: str) -> list[tuple[int, int, str]]:
    """The candidates of part that are not negated ("not 10"), or [] when there are too many."""
    found = _candidates(part)
    if len(found) > 2 * MAX_CANDIDATES:
        return []
    kept, negated = [], False
    for i, (a, b, k) in enumerate(found):
        # "not 3,5,7": the negation covers the whole list it starts, not only its first value
        listed = negated and i and _LIST_GAP.fullmatch(part[found[i - 1][1] : a])
        negated = bool(listed or _NEGATED.search(part[max(0, a - 20) : a]))
        if not negated:
            kept.append((a, b, k))
    return kept


def _cut_explanation(sentence: str) -> str:
    """The sentence without an explanation after its answer: ", which is more than 1/2",
    ", since ...". "which is 1,000" restates the answer (a candidate right after it) and stays."""
    for m in list(_EXPLANATION.finditer(sentence))[:MAX_CANDIDATES]:
        first = _candidates(_RESTATED.sub("", sentence[m.end() :][:60], count=1))[:1]
        if m.group(1) == "which" and first and first[0][0] == 0:
            continue  # "which is 1,000.99": the answer restated
        if _kept(sentence[: m.start()]):
            return sentence[: m.start()]
    return sentence


def _read(sentence: str, pieces: list[str], letter: bool = False) -> str | None:
    """The answer a sentence states (rules 2-5 of the module docstring), or None; with
    letter=True an option letter followed by its value (`is C: 6.5 N`) is the letter."""
    sentence = _cut_explanation(sentence)
    for m in list(_THEREFORE.finditer(sentence))[::-1][:MAX_CANDIDATES]:
        if _has_candidate(sentence[m.end() :]):  # "... both fail, so (B)": the conclusion
            sentence = sentence[m.end() :]
            break
    part = sentence
    copulas = list(_COPULA.finditer(sentence))[::-1][:MAX_CANDIDATES]
    last = sentence[copulas[0].end() :] if copulas else ""
    if last and _REJECTED.match(last) and not _has_candidate(last):
        return None  # "10 is wrong", "x = 4 is not possible": a value rejected
    for c in copulas:  # the last copula with a value after it that is not rejected
        if _kept(sentence[c.end() :]):
            part = sentence[c.end() :]
            break
    m = _OPTION_VALUE.match(part) if letter else None
    if m and not _OTHER_LETTER.search(part, m.end()):
        return "(%s)" % (m.group(1) or m.group(2))
    kept = _kept(part)
    if not kept or len(kept) > MAX_CANDIDATES:
        return None
    for (_, b, _), (a, _, _) in zip(kept, kept[1:]):
        if not _LIST_GAP.fullmatch(part[b:a]):
            return None  # several values with words between them: ambiguous
    texts = []
    for a, b, kind in kept:
        text = part[a:b]
        texts.append(_piece_text(pieces[int(text[1:-1])]) if kind == "piece" else text)
    return ", ".join(t for t in texts if t) or None


def conclusion(text: str, letter: bool = False) -> str | None:
    """The answer a solution's conclusion states (see the module docstring), or None.
    letter=True (the gold is an option letter): `is C: 6.5 N` states C, not 6.5 (_read)."""
    try:
        if not isinstance(text, str):
            return None
        flat, pieces = _math_pieces(text[-MAX_TAIL:])
        if len(text) <= MAX_BARE and not _PROSE.search(_PIECE.sub(" ", flat)):
            return _PIECE.sub(lambda m: _piece_text(pieces[int(m.group(1))]), flat).strip() or None
        sentences = [s.strip() for s in _SENTENCE_END.split(flat) if s.strip()]
        marked = [i for i, s in enumerate(sentences) if re.search(r"(?<![a-z])answer", s.lower())]
        if marked and _has_candidate(sentences[marked[-1]]):
            return _read(sentences[marked[-1]], pieces, letter)
        for s in sentences[::-1][:3]:  # closing remarks without values are skipped
            if _has_candidate(s):  # a question with values restates the problem: no answer
                return None if s.endswith("?") else _read(s, pieces, letter)
        return None
    except Exception:  # defensive: reading must never raise
        return None


# A side of a computation: numbers, operators, brackets, bars, \frac, \sqrt, \pi; no variable
# (a letter or a Greek name), so `|4-9| = 5` is a result and `2\alpha = 60` is not.
_COMPUTATION = re.compile(r"(?:[\d\s.,+\-*/^()\[\]{}|!]|\\(?:[dt]?frac|sqrt|cdot|times|div|"
                          r"left|right|[lr]?vert|binom|pi|[,;! ]))+")


def letter_gold(gold: str) -> bool:
    """Whether a gold is an option letter (`C`, `(C)`, `\\text{(C)}`): conclusion's letter."""
    return re.fullmatch(r"\(?[A-Ea-e]\)?", normalize(gold)) is not None


def equation_sides(answer: str) -> list[str]:
    """The answer, then, for a computation with its result (`|4-9| = 5`, `3 \\cdot 4 - 11 = 1`:
    no variable on either side) the result, and for `name = value` with one `=` and a name on the
    left (letters, no arithmetic: `P(A) = \\frac35`, `\\text{Area} = 12`), the value as well.
    `a^2 + b = 0`, `2\\alpha = 60` and `7 = 11a + c` are equations, not named values."""
    sides = _split_eq(answer)
    if len(sides) == 2 and sides[1].strip() and all(map(_COMPUTATION.fullmatch, sides)) and \
            re.search(r"\d", sides[0]):  # a computation and its result, `|4-9| = 5`: the result
        return [answer, sides[1].strip()]
    if len(sides) != 2 or not sides[1].strip() or not re.search(r"[A-Za-z]", sides[0]):
        return [answer]
    if re.search(r"[-+*/^]|\\(?:frac|sqrt|cdot|times|div)|^\s*\d", sides[0]):
        return [answer]  # arithmetic, or a coefficient (`2\alpha = 60`): an equation
    return [answer, sides[1].strip()]


def _split_eq(answer: str) -> list[str]:
    """answer split at its `=` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(answer):
        depth += c in "([{"
        depth -= c in ")]}"
        if c == "=" and depth == 0:
            parts.append(answer[start:i])
            start = i + 1
    return parts + [answer[start:]]
