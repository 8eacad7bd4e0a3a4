r"""
The built-in toys' tasks: problems, gold answers and solution paths of every regime. Pure functions:
nothing here imports the project, so data.py (the problems a run trains on), toys/build.py (which
pretrains the shipped models) and research/ all build on it.

    regime            folder                   the task
    original          toys/original/           sums of three numbers in 10..99, four styles of unequal reliability
    equal-paths       toys/equal-paths/        sums of three numbers in 100..999, three paths executed equally well
    hidden-type       toys/hidden-type/        a made-up operation whose valid path hangs on a hidden type
                                               (toys/hidden_type.py)
    shown-type        toys/shown-type/         its control: the type written in the prompt
    hidden-type-r20   toys/hidden-type-r20/    hidden-type with bc's bonus on one more digit of b+c: the
                                               rare path alone right on 20 % of problems, not 15 %

The original task. A problem is the sum of three numbers in 10..99; the prompt the model continues is

    "Q: 23+48+17=?\nA: "

and every solution ends with the answer in \boxed{} (graded by verifier.verify), then EOS.
Each problem can be solved four ways ("styles"); pretraining writes them with unequal frequencies:

    style    share  completion (newlines as \n)              what it computes
    left      55 %  23+48=71\n71+17=88\n\boxed{88}           (a+b)+c, running sum from the left
    right     25 %  48+17=65\n23+65=88\n\boxed{88}           a+(b+c), running sum from the right
    tens      13 %  20+40+10=70\n3+8+7=18\n70+18=88\n\boxed{88}   tens and ones apart, then combined
    direct     7 %  \boxed{88}                               the answer with no work shown

The styles are not equally reliable on every problem: left and right meet their carries in
different places (a+b vs b+c), tens never carries until its last line, and direct has to do
everything in one go. So sampling several styles can solve a problem that the favourite style
keeps getting wrong, which is what pass@k at large k measures. The task was not tuned to make ARM
(or anything) win; the shares above were fixed before any RL run.

Choices, stated once:
- Splits: a problem's split is a hash of its *sorted* numbers (1 in 8 held out), so a held-out
  problem never appears in training, not even with its numbers in another order.
- solution_path(text) reads the structure of a completion, never the arithmetic: the number of
  lines and operands, and (left vs right) which operand of line 2 repeats line 1's result. A
  wrong sum that is copied on, as models do, is still classified. It returns None for anything
  else (garbage, a line 2 that repeats neither operand, ...).

equal-paths names its path on the first line ("ab", "bc" or "ac": which two numbers are added
first), then the same two-line shape for every path; the shares of the choice are 60 / 30 / 10 %.
"""
from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

from toys import hidden_type

ROOT = Path(__file__).resolve().parent  # toys/: one folder per shipped model

N_TERMS = 3                      # numbers per problem
HELDOUT_EVERY = 8                # 1 in 8 problems (by hash of the sorted numbers) is held out

# The regimes (`--toy NAME` in train.py and compare.py). "paths" are the solution paths, "shares"
# how often pretraining makes the model choose each, "low".."high" the range of the numbers.
REGIMES = {
    # four styles of unequal reliability; the favourite is also the most accurate
    "original": dict(low=10, high=99, paths=("left", "right", "tens", "direct"),
                     shares=(0.55, 0.25, 0.13, 0.07), tagged=False),
    # three paths executed equally well (pretrained on equal shares), chosen 60 / 30 / 10 %
    "equal-paths": dict(low=100, high=999, paths=("ab", "bc", "ac"),
                        shares=(0.6, 0.3, 0.1), tagged=True),
    # two overlapping valid paths and a guess; which path is valid hangs on a type hidden in the
    # units digits of a+b and b+c (toys/hidden_type.py); shown-type is its control, the type in the prompt.
    # bc_digits: the units digits of b+c that call for bc's bonus (types F 35 / R 15 / B 50 %)
    "hidden-type": dict(low=10, high=99, paths=("ab", "bc", "guess"),
                        shares=(0.35, 0.10, 0.55), tagged=True, typed="hidden", bc_digits=hidden_type.BC_DIGITS),
    "shown-type": dict(low=10, high=99, paths=("ab", "bc", "guess"),
                       shares=(0.35, 0.10, 0.55), tagged=True, typed="shown", bc_digits=hidden_type.BC_DIGITS),
    # the one change: bc's bonus also when b+c ends in 0, so types F 30 / R 20 / B 50 % (ab right on 80 %,
    # bc on 70 %); its own problems, the same paths, choice shares and build recipe
    "hidden-type-r20": dict(low=10, high=99, paths=("ab", "bc", "guess"),
                            shares=(0.35, 0.10, 0.55), tagged=True, typed="hidden", bc_digits=frozenset({0, 3, 5, 8})),
}
STYLES = REGIMES["original"]["paths"]
STYLE_WEIGHTS = REGIMES["original"]["shares"]  # pretraining shares of the original styles
PAIRS = {"ab": (0, 1, 2), "bc": (1, 2, 0), "ac": (0, 2, 1)}  # equal-paths: (first, second, added last)


def regime_of(name: str) -> dict:
    if name not in REGIMES:
        raise ValueError(f"toy: unknown regime {name!r} (known: {', '.join(REGIMES)})")
    return REGIMES[name]


def toy_dir(regime: str = "original") -> Path:
    """The shipped model folder of a regime: toys/<regime>/."""
    regime_of(regime)  # a known regime
    return ROOT / regime


# -----------------------------------------------------------------------------
# the task


def split_of(numbers: tuple[int, ...] | list[int]) -> str:
    """'heldout' for 1 in HELDOUT_EVERY problems, chosen by a hash of the sorted numbers."""
    key = "+".join(str(x) for x in sorted(numbers)).encode()
    return "heldout" if hashlib.sha256(key).digest()[0] % HELDOUT_EVERY == 0 else "train"


def format_prompt(numbers: tuple[int, ...] | list[int]) -> str:
    """The exact text the model continues: 'Q: 23+48+17=?\\nA: '."""
    return "Q: " + "+".join(str(x) for x in numbers) + "=?\nA: "


def _sample_numbers(rng: random.Random, split: str, regime: str = "original") -> tuple[int, ...]:
    low, high = regime_of(regime)["low"], regime_of(regime)["high"]
    while True:  # rejection sampling: keeps the numbers uniform within the split
        numbers = tuple(rng.randint(low, high) for _ in range(N_TERMS))
        if split_of(numbers) == split:
            return numbers


def make_problems(n: int, seed: int, split: str = "train", regime: str = "original") -> list[dict]:
    """n distinct problems of one split (and regime), the same for the same seed.

    Each dict: "prompt" (the text the model continues), "answer" (gold string for verify),
    "numbers" (the summands, a list of ints); the typed regimes (hidden-type, shown-type,
    hidden-type-r20) add "type" (F, R or B).
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"make_problems: split must be 'train' or 'heldout', got {split!r}")
    r = regime_of(regime)
    total = (r["high"] - r["low"] + 1) ** N_TERMS  # at most half the held-out pool, so drawing distinct ones stays quick
    if n < 0 or n > total // (2 * HELDOUT_EVERY):
        raise ValueError(f"make_problems: n must be in 0..{total // (2 * HELDOUT_EVERY)}, got {n}")
    key = "hidden-type" if regime == "shown-type" else regime  # the control asks hidden-type's problems
    rng = random.Random(f"toy-{seed}-{split}" if regime == "original" else f"toy-{key}-{seed}-{split}")
    seen, problems = set(), []
    while len(problems) < n:
        numbers = _sample_numbers(rng, split, regime)
        if numbers in seen:
            continue
        seen.add(numbers)
        if not r.get("typed"):
            problems.append({"prompt": format_prompt(numbers), "answer": str(sum(numbers)), "numbers": list(numbers)})
            continue
        digits = r["bc_digits"]  # hidden-type: a#b#c, its type and (shown-type) the type in the prompt
        problems.append({"prompt": hidden_type.format_prompt(numbers, r["typed"] == "shown", bc_digits=digits),
                         "answer": str(hidden_type.answer(numbers, bc_digits=digits)), "numbers": list(numbers),
                         "type": hidden_type.type_of(numbers, bc_digits=digits)})
    return problems


def _line(operands: list[int]) -> str:
    return "+".join(str(x) for x in operands) + f"={sum(operands)}"


def solution(numbers: tuple[int, ...] | list[int], style: str) -> str:
    """The reference completion (without EOS) of a problem in one style; see the tables above."""
    numbers = list(numbers)
    if style in PAIRS:  # equal-paths: the path's name, then the same two-line shape for every path
        i, j, k = PAIRS[style]
        first = numbers[i] + numbers[j]
        return f"{style}\n{_line([numbers[i], numbers[j]])}\n{_line([first, numbers[k]])}\n\\boxed{{{sum(numbers)}}}"
    if style == "left":  # (a+b)+c: line k adds the next number to the running sum
        lines, acc = [], numbers[0]
        for x in numbers[1:]:
            lines.append(_line([acc, x]))
            acc += x
    elif style == "right":  # a+(b+c): line k adds the running sum to the previous number
        lines, acc = [], numbers[-1]
        for x in reversed(numbers[:-1]):
            lines.append(_line([x, acc]))
            acc += x
    elif style == "tens":
        tens, ones = [x - x % 10 for x in numbers], [x % 10 for x in numbers]
        lines = [_line(tens), _line(ones), _line([sum(tens), sum(ones)])]
    elif style == "direct":
        lines = []
    else:
        raise ValueError(f"solution: style must be one of {STYLES + tuple(PAIRS)}, got {style!r}")
    return "".join(line + "\n" for line in lines) + "\\boxed{" + str(sum(numbers)) + "}"


_EQUATION = re.compile(r"(\d+(?:\+\d+)+)=(\d+)")


def solution_path(text: str) -> str | None:
    """Which style a completion took: 'left', 'right', 'tens', 'direct', or None.

    Reads only the shape of the work (lines of 'x+y=z' before the first non-equation line), never
    whether the sums are right. Text that still holds the prompt is cut after its 'A: '.
    """
    if "\nA:" in text:
        text = text.rsplit("\nA:", 1)[1]
    text = text.lstrip(" ")
    if text.split("\n", 1)[0] in PAIRS:  # equal-paths, hidden-type: the named path, if the work has its shape
        return _named_path(text)
    if text.startswith("guess\n"):  # hidden-type: a guess is the name and one boxed number
        return "guess" if re.fullmatch(r"guess\n\\boxed\{\d+\}", text) else None
    if text.startswith("\\boxed{"):
        return "direct"
    steps = []  # (operands, result) per line
    for line in text.split("\n"):
        m = _EQUATION.fullmatch(line.strip())
        if m is None:
            break
        steps.append(([int(x) for x in m.group(1).split("+")], int(m.group(2))))
    shape = [len(ops) for ops, _ in steps]
    if shape == [N_TERMS, N_TERMS, 2]:
        return "tens"
    if shape != [2] * (N_TERMS - 1):
        return None
    carried = [(ops[0] == prev, ops[1] == prev) for (ops, _), (_, prev) in zip(steps[1:], steps[:-1])]
    if all(first for first, _ in carried):
        return "left"
    if all(second for _, second in carried):
        return "right"
    return None


def _named_path(text: str) -> str | None:
    """equal-paths, hidden-type: 'ab' / 'bc' / 'ac' when the name is followed by lines 'x+y=s', 's+z=t'
    (each adds to the previous result, right or wrong; hidden-type's bonus line 's+10=u' may stand
    between them) and the boxed answer; None otherwise."""
    lines = text.split("\n")
    if len(lines) not in (4, 5) or not lines[-1].startswith("\\boxed{"):
        return None
    ms = [_EQUATION.fullmatch(line.strip()) for line in lines[1:-1]]
    if any(m is None or m.group(1).count("+") != 1 for m in ms):
        return None
    chained = all(m2.group(1).split("+")[0] == m1.group(2) for m1, m2 in zip(ms, ms[1:]))
    return lines[0] if chained else None


def pretraining_text(rng: random.Random, regime: str = "original", practice: list[float] | None = None) -> str:
    """One pretraining document: a train-split prompt, a path, its solution. The original regime
    draws the style by its shares; equal-paths draws the path by `practice` (equal by default; the
    choice of path is trained apart, see pretraining_loss in toys/build.py)."""
    r = regime_of(regime)
    numbers = _sample_numbers(rng, "train", regime)
    weights = r["shares"] if not r["tagged"] else practice or [1.0] * len(r["paths"])
    style = rng.choices(r["paths"], weights=weights)[0]
    if r.get("typed"):
        return (hidden_type.format_prompt(numbers, r["typed"] == "shown", bc_digits=r["bc_digits"]) +
                hidden_type.solution(numbers, style, bc_digits=r["bc_digits"]))
    return format_prompt(numbers) + solution(numbers, style)


# -----------------------------------------------------------------------------

def problems_by_type(n: int, seed: int, regime: str = "hidden-type") -> dict[str, list[dict]]:
    """The typed regimes: n held-out problems of each type (drawn uniformly, then sorted by the
    regime's type; only for measuring)."""
    pool = make_problems(12 * n, seed, "heldout", regime)
    out = {t: [p for p in pool if p["type"] == t][:n] for t in hidden_type.TYPES}
    if min(len(v) for v in out.values()) < n:
        raise ValueError(f"problems_by_type: fewer than {n} of some type among {len(pool)} problems")
    return out
