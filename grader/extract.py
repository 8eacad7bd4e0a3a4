"""The final answer of a response, found: extract_answer, final_boxes, gold_answer.

canonical.py writes what these return in one canonical form and verifier.py compares it; the
choices made here (which \\boxed{} counts, which markers state an answer, when several boxes
are one list) are listed in verifier.py's docstring. Standard library only.
"""
from __future__ import annotations

import re

MAX_BOX_SCAN = 4000  # a \boxed{ that does not close within this many chars is ignored
MAX_BOX_TRIES = 8  # how many \boxed occurrences (from the end) we try before giving up


# ----------------------------------------------------------------------------- extraction

_ANSWER_MARKERS = ("final answer is", "answer is", "final answer:", "answer:")
# Chat templates' end-of-turn tokens: a response ends at the first one (end_of_turn), so
# `Final answer: 17<|im_end|>` states 17, and text after the token is not the model's answer.
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "</s>", "<|end|>",
              "<end_of_turn>", "<eos>", "<|return|>", "<|end\u2581of\u2581sentence|>",
              "<\uff5cend\u2581of\u2581sentence\uff5c>")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def end_of_turn(text: str) -> str:
    """text up to its first end-of-turn token (END_TOKENS), or text itself when it has none."""
    if "<" not in text:  # the common case: one scan
        return text
    cut = min((k for k in map(lambda t: _first(text, t), END_TOKENS) if k >= 0), default=len(text))
    return text[:cut]


def _first(text: str, token: str) -> int:
    """Where token first ends a turn in text, or -1. `</s>` closes an HTML strikethrough
    (`<s>5</s> 6`) when an `<s>` opens shortly before it on its line and text goes on."""
    k = text.find(token)
    if token != "</s>" or k < 0:
        return k
    last = len(text.rstrip())  # `</s>` at the very end is always the end of the turn
    for _ in range(MAX_BOX_TRIES):  # after that many strikethroughs the next `</s>` ends it
        if k < 0 or k + 4 >= last:
            return k
        line = text.rfind("\n", max(0, k - 200), k) + 1
        if text.rfind("<s>", max(line, k - 200), k) < 0:
            return k
        k = text.find(token, k + 4)
    return k


def _box_content(text: str, start: int) -> tuple[str, int] | None:
    """(content, end) of the \\boxed / \\fbox command whose argument starts at text[start]."""
    i, n = start, len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None
    if text[i] != "{":  # `\boxed 5`: one token up to whitespace or $
        if start == i:  # `\boxedx` is another command, not a box
            return None
        j = i
        while j < n and j - i < MAX_BOX_SCAN and text[j] not in " \t\n$":
            j += 1
        return text[i:j], j
    depth, j, end = 0, i, min(n, i + MAX_BOX_SCAN)
    while j < end:
        c = text[j]
        if c == "\\":
            j += 2  # \{ and \} do not count
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
        j += 1
    return None  # unclosed (or longer than MAX_BOX_SCAN)


def _last_box(text: str, end: int | None = None, lo: int = 0) -> tuple[str, int, int] | None:
    """(content, start, end) of the last non-empty \\boxed / \\fbox in text[lo:end]."""
    end = len(text) if end is None else end
    for _ in range(MAX_BOX_TRIES):
        b, f = text.rfind("\\boxed", lo, end), text.rfind("\\fbox", lo, end)
        pos = max(b, f)
        if pos < 0:
            return None
        arg = pos + (6 if pos == b else 5)
        box = _box_content(text, arg)
        if box is not None and box[0].strip():
            return box[0], pos, box[1]
        end = pos
    return None


# What may stand between two boxes that state one list of answers: spacing, math delimiters,
# commas, "and" / "or", a label such as `x =` or `x_1 =`, a part or list label such as `(b)`
# or `2.` (`\boxed{2}, \boxed{-3}`, `$x = \boxed{2}$ or $x = \boxed{-3}$`). Anything else
# (words such as "wait") keeps the boxes apart, and then only the last one counts.
_BOX_GAP = re.compile(
    r"\s+|\$|\\[()\[\],;:! ]|\\q?quad|\\\\|[,;&]|(?<![A-Za-z])(?:and|or)(?![A-Za-z])"
    r"|\\text\{\s*(?:and|or|,)?\s*\}|(?:\\[a-zA-Z]+|[a-zA-Z])(?:_\{?[a-zA-Z0-9]+\}?)?\s*="
    r"|(?<![A-Za-z0-9])(?:\([a-h]\)|[a-h]\)|\d{1,2}[.)])(?=\s)")  # part labels: (a) b) 1. 2)
MAX_GAP = 80  # longest text between two boxes of one list
# A short phrase of plain words may also join two boxes ("$\\boxed{2}$ and the other root is
# $\\boxed{-3}$") when it has no sentence end and no word that takes a box back.
_TAKEN_BACK = re.compile(r"(?<![a-z])(?:wait|no|not|but|however|instead|actually|rather|wrong|"
                         r"incorrect|mistake|error|check|recheck|fail|fails|reject|discard|oops|"
                         r"sorry|hmm|redo|again|correct|correction)(?![a-z])|n't", re.IGNORECASE)
MAX_PHRASE = 40


def _joins(gap: str) -> bool:
    """Whether the text between two boxes leaves them one list (see _BOX_GAP, _TAKEN_BACK)."""
    rest = _BOX_GAP.sub(" ", gap).strip()
    if not rest:
        return True
    return (len(rest) <= MAX_PHRASE and re.fullmatch(r"[A-Za-z ,'()-]+", rest) is not None
            and not re.search(r"[.!?;:]\s|\n\s*\n", gap) and not _TAKEN_BACK.search(gap))


def final_boxes(text: str) -> list[str]:
    """The boxes that together state the final answer as a list: the last box and the boxes
    right before it that only connectors or a short phrase separate from it (see _joins),
    oldest first, each cleaned; [] unless there are at least two.

    verifier.verify compares them joined as one list (`\\boxed{-3}` and `\\boxed{2}` against
    a gold `2, -3`) when the last box alone does not match. Empty when a final-answer clause
    after the last box overrides it (see extract_answer).
    """
    try:
        text = end_of_turn(text) if isinstance(text, str) else ""
        last = _last_box(text)
        out, start = [last[0]] if last else [], last[1] if last else 0
        for _ in range(MAX_BOX_TRIES - 1 if last else 0):
            prev = _last_box(text, start, max(0, start - MAX_GAP - MAX_BOX_SCAN))
            if prev is None or start - prev[2] > MAX_GAP:
                break
            if not _joins(text[prev[2] : start]):
                break
            out.append(prev[0])
            start = prev[1]
        if len(out) < 2 or _final_clause_after(text, last[2]) is not None:
            return []
        boxes = [c for c in map(_clean, reversed(out)) if c]
        return boxes if len(boxes) > 1 else []
    except Exception:  # defensive: extraction must never raise
        return []


def _math_block(text: str, i: int) -> str | None:
    """Content of the math block opening at text[i] ($$..$$, \\[..\\], $..$, \\(..\\)), or None.
    Inline math must close on its own line; display math may span lines."""
    for opener, closer, inline in (("$$", "$$", False), ("\\[", "\\]", False),
                                   ("$", "$", True), ("\\(", "\\)", True)):
        if text.startswith(opener, i):
            j = i + len(opener)
            k = text.find(closer, j, j + MAX_BOX_SCAN)
            while closer == "$" and k > 0 and text[k - 1] == "\\":  # `\$` inside is currency
                k = text.find(closer, k + 1, j + MAX_BOX_SCAN)
            if k < 0 or inline and "\n" in text[j:k]:
                return None
            return text[j:k]
    return None


def _clause_after(text: str, pos: int) -> str:
    """The answer stated after a marker at pos: a math block that opens right after it (also
    on the next line: `Answer:\\n$$7$$`), else the rest of the line cut at the end of the
    sentence."""
    i = pos
    while i < len(text) and i - pos < 40 and text[i] in " \t\n*:":
        i += 1
    if text.startswith(("$", "\\(", "\\["), i):
        block = _math_block(text, i)
        if block is not None and block.strip():
            return block
    nl = text.find("\n", pos, pos + MAX_BOX_SCAN)
    line = text[pos : nl if nl >= 0 else min(len(text), pos + MAX_BOX_SCAN)]
    line = line.lstrip(" :*\t")
    m = re.search(r"\.(?:\s|$)", line)  # "is 3. So ..." -> "3"; "0.5" is kept
    line = line[: m.start()] if m else line
    k = line.rfind(" is ")  # "Answer: The volume of the box is 120" -> "120"
    return line[k + 4 :] if k >= 0 else line


def _bare_answer_marker(low: str, text: str, offset: int) -> tuple[int, str] | None:
    """The last `Answer` used as a marker without a colon: `Answer $7$`, `Answer \\[ 7 \\]`,
    `**Answer**: 7`, or a heading `## Final Answer` with the answer alone on the next line (at
    most 80 characters). The word must open its line (after markdown `**`, `#`, or "Final"),
    stand alone (not "answers", "answered") and be followed by a math block, a colon after
    markdown stars, or the end of its line. Returns (position, answer)."""
    end = len(low)
    for _ in range(MAX_BOX_TRIES):
        p = low.rfind("answer", 0, end)
        if p < 0:
            return None
        end = p
        line = low[low.rfind("\n", 0, p) + 1 : p].strip(" \t*#>-")
        if line not in ("", "final"):  # the marker opens its line: not "to answer $x$, ..."
            continue
        i = p + 6
        while i < len(low) and i - p < 40 and low[i] in " \t\n*:":
            i += 1
        gap = low[p + 6 : i]
        if text.startswith(("$", "\\(", "\\["), offset + i) and "\n" not in gap.rstrip("\n"):
            block = _math_block(text, offset + i)
            if block is not None and block.strip():
                return p, block
        elif ":" in gap and "\n" not in gap:
            return p, _clause_after(text, offset + i)
        elif "\n" in gap:  # a heading `**Final Answer**` and the answer alone on the next line
            nl = text.find("\n", offset + i)
            line = text[offset + i : nl if nl >= 0 else offset + i + 81]
            if 0 < len(line.strip()) <= 80:
                return p, line
    return None


_FINAL_MARKERS = ("final answer is", "final answer:")
_ANSWER_STARTS = set("$\\-+([{.0123456789")


def _final_clause_after(text: str, start: int) -> str | None:
    """A "final answer is / Final answer:" clause after position start (an intermediate box
    followed by `The final answer is $X$`: the last stated final answer wins). The clause must
    start like an answer (math, a LaTeX command, a digit, a sign or a bracket) or be at most
    three characters (`(B)`), so that `\\boxed{5}. The final answer is correct since 5 > 3`
    keeps the box."""
    if text.find("nswer", start) < 0 and text.find("NSWER", start) < 0:
        return None  # the common case: nothing after the box mentions an answer
    low = text[max(start, len(text) - 20000) :].lower()
    base = len(text) - len(low)
    p = max(low.rfind(m) for m in _FINAL_MARKERS)
    if p < 0:
        return None
    m = next(m for m in _FINAL_MARKERS if low.startswith(m, p))
    i = base + p + len(m)
    first = text[i : i + 40].lstrip(" \t\n:*")[:1]
    ans = _clean(_clause_after(text, i))
    if ans and (first in _ANSWER_STARTS or len(ans) <= 3):
        return ans
    return None


def _clean(ans: str) -> str | None:
    """Strip the wrappers around an extracted answer: $, \\( \\), \\[ \\], **, trailing '.'."""
    s = ans.strip()
    for _ in range(4):
        before = s
        s = s.strip().strip("$").strip()
        if s.startswith("**") or s.endswith("**"):
            s = s.strip("*").strip()
        for a, b in (("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(a) and s.endswith(b):
                s = s[2:-2]
        s = s.rstrip(".").strip()
        if s == before:
            break
    return s or None


def extract_answer(text: str, *, last_number_fallback: bool = False) -> str | None:
    """The final answer in a model response, or None if it gives none.

    The response ends at its first end-of-turn token (`<|im_end|>`, `</s>`: END_TOKENS).
    Order: last \\boxed{...}/\\fbox{...} (only the last box counts, unless a "final answer is"
    clause follows it: then that clause), else last `#### N`, else the last "final answer is /
    answer is / Answer:" clause or `Answer` followed by math (`Answer $7$`), else (only if
    last_number_fallback) the last number in the last 2,000 characters. A marker followed by
    a math block takes the block (`Answer:\\n$$7$$`).
    """
    try:
        if not isinstance(text, str) or not text:
            return None
        text = end_of_turn(text)
        box = _last_box(text)
        if box is not None:
            final = _final_clause_after(text, box[2])
            return final if final is not None else _clean(box[0])
        pos = text.rfind("####")
        if pos >= 0:
            ans = _clean(text[pos + 4 :].lstrip("#").split("\n", 1)[0][:MAX_BOX_SCAN])
            if ans:
                return ans
        tail_start = max(0, len(text) - 20000)  # markers are searched near the end
        low = text[tail_start:].lower()
        best, best_len = -1, 0
        for m in _ANSWER_MARKERS:
            p = low.rfind(m)
            if p > best:
                best, best_len = p, len(m)
        bare = _bare_answer_marker(low, text, tail_start)
        if bare is not None and bare[0] > best:  # `Answer $7$` after any other marker
            ans = _clean(bare[1])
            if ans:
                return ans
        if best >= 0:
            ans = _clean(_clause_after(text, tail_start + best + best_len))
            if ans:
                return ans
        if last_number_fallback:
            nums = _NUMBER_RE.findall(text[-2000:])
            if nums:
                return nums[-1].rstrip(",")
        return None
    except Exception:  # defensive: extraction must never raise
        return None


def gold_answer(gold: str) -> str:
    """A gold holding \\boxed{...} is the box's content; several boxes are one list."""
    if "\\boxed" not in gold and "\\fbox" not in gold:
        return gold
    golds = final_boxes(gold)
    return ", ".join(golds) if golds else extract_answer(gold) or gold
