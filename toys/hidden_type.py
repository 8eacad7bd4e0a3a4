r"""
The third built-in toy, `hidden-type`: two valid paths that overlap, and a type that decides which is
right but that no policy learnt to use where it chooses its path (hidden in effect, not unreadable: a
probe reads it there). Built so that GRPO *can* narrow what is solved at large k.

    python -m toys.build --toy hidden-type      # rebuild toys/hidden-type/ (until the paths are learnt)
    python -m research.gates                    # measure the gates of the shipped build -> BUILD.json
    python -m research.gates --toy shown-type   # the same for the control (type written in the prompt)

This file is the task alone (pure functions, no imports): the problems and answers come from
toys/tasks.py's table, the build from toys/build.py, the gates and probes from research/gates.py.

The task: a made-up operation on three two-digit numbers, "Q: 20#21#11=?\nA: ":

    a#b#c = a + b + c, plus 10 if a+b ends in 0-4 or b+c ends in 3, 5 or 8   (one bonus of 10 at most)

The completion's first token names the path:

    ab     (a+b), its bonus, then +c   ab\n20+21=41\n41+10=51\n51+11=62\n\boxed{62}   the favourite, 35 %
    bc     (b+c), its bonus, then +a   bc\n21+11=32\n32+20=52\n\boxed{52}            the rare path, 10 %
    guess  no work                     guess\n\boxed{60}                            a#b#c rounded to tens, 55 %

Each path is an unconditional procedure with a blind spot, on purpose: `ab` writes a+b and adds the
bonus that a+b decides (its line "41+10=51"), but never the one b+c decides; `bc` writes b+c, adds
its bonus, never the one a+b decides. The types:

    type   when                                         share of uniform problems   right paths
    F      a+b ends in 0-4, b+c not in 3, 5, 8          35 %                        ab only
    R      b+c ends in 3, 5 or 8, a+b in 5-9            15 %                        bc only
    B      both conditions or neither                   50 %                        ab and bc

So the favourite is right on 85 % of the problems, the rare path on 65 %, and 15 % are solved only by
the rare path: the shape of Yue et al.'s finding on real models. A guess is right only when a#b#c is
a multiple of ten. Repairing `ab` on R would need b+c's last digit at a point where `ab`'s own work
never computes it. The type is readable at the last prompt position (probes of the shipped model:
linear AUC 0.83-0.89, MLP 0.91-0.98; the build's 0.65 probe gate failed), but no policy routed on it:
not GRPO in its 300-step pilot, nor any method of the comparison (research/README.md). Why built in: with
real arithmetic errors, the favourite of our first toy was also its most reliable path everywhere,
so GRPO's narrowing had nowhere to show.

Attempts before this one (all in research/results/PREDICTIONS.md, addendum 3). 1 (commit cf0277c): sums, the
type from the parities of a, b, c and a slip in the second line; its slips were never learnt (17,500
steps). 2 (commit 5d9c186): sums, F / R by a+b+c mod 5, and a box 10 too large where a path was not
valid; it passed every build gate, but in the GRPO pilot the policy simply stopped slipping (`ab`'s
accuracy on R 0.002 -> 0.99 in 200 steps): a type-dependent deviation from a procedure the model runs
right elsewhere is one simple rule away from repair. Here the failure is the procedure itself.
3: this operation with two bonuses that could add up (a+b = 1, b+c = 3 mod 5); 4 % of problems had no
right path (base pass@32 0.943). 3b: one bonus at most; every gate passed, the blind spot held and
nothing was routed, but with F and R equally common (16 % each) GRPO's push on the path name averaged
zero and the rare path was never driven out. 4, this one: F more common than R.

Pretraining practises ab, bc and guess equally on every type; the token that names the path is
trained with the same soft label whatever the type: 45 / 10 / 45 % in stage 1, until the paths are
executed right and their blind spots learnt (6,000 steps), then 35 / 10 / 55 % in stage 2 (1,000
steps cooling down), which keeps base pass@1 in its gate (in attempt 2, 45 / 10 / 45 gave 0.458 and
40 / 10 / 50 0.459: the cool-down also sharpens execution). Training documents are uniform problems:
balancing them by type would bias the digits and so give the type away in the prompt text. A weak
favourite and many guesses instead of a noisy second stage: with execution near certain, the
guesses set base pass@1 (about 0.4) and leave GRPO an easy +0.4 to find.

`shown-type` is the control: the same task with the type written in the prompt
("Q: 20#21#11=? type F\nA: "), so that a policy can route each problem to its valid path.

`hidden-type-r20` is the same task with bc's condition on one more units digit of b+c, 0, 3, 5 or 8
(its `bc_digits` in toys/tasks.py's REGIMES, a keyword of answer, type_of, solution and format_prompt):
F 30 %, R 20 %, B 50 % of uniform problems, so `ab` is right on 80 % and `bc` on 70 %. The same paths,
choice shares, build recipe and gates; its own problems (shown-type asks hidden-type's).

The gates (research/gates.py, stored in BUILD.json): accuracy with the path forced per path x type at T = 1
and T = 0.05; the choice's probabilities per type (exact, from the logits at the last prompt
position); base pass@k overall and per type; linear and small-MLP probes of F vs R on the hidden
state at the last prompt position, at every layer.
"""
from __future__ import annotations

TYPES = ("F", "R", "B")
VALID = {"ab": ("F", "B"), "bc": ("R", "B")}  # where each path is right
BONUS = 10
# the units digits of a+b, resp. b+c, that call for the bonus; a regime may widen bc's (its "bc_digits"
# in toys/tasks.py's REGIMES: hidden-type-r20 adds 0)
AB_DIGITS, BC_DIGITS = frozenset({0, 1, 2, 3, 4}), frozenset({3, 5, 8})
SHARES = {"F": 0.35, "R": 0.15, "B": 0.5}  # of uniform problems with BC_DIGITS (tests/test_hidden_type.py counts them)


def _conditions(numbers: tuple[int, ...] | list[int], bc_digits: frozenset[int]) -> tuple[bool, bool]:
    """(the condition ab can see, the one bc can see): a+b, resp. b+c, ends in one of its digits."""
    a, b, c = numbers
    return (a + b) % 10 in AB_DIGITS, (b + c) % 10 in bc_digits


def answer(numbers: tuple[int, ...] | list[int], *, bc_digits: frozenset[int] = BC_DIGITS) -> int:
    """a#b#c = a + b + c, + 10 if either condition holds (one bonus at most)."""
    return sum(numbers) + BONUS * any(_conditions(numbers, bc_digits))


def type_of(numbers: tuple[int, ...] | list[int], *, bc_digits: frozenset[int] = BC_DIGITS) -> str:
    """'F' (only ab right), 'R' (only bc right) or 'B' (both); see the table above."""
    sees_ab, sees_bc = _conditions(numbers, bc_digits)
    return "B" if sees_ab == sees_bc else "F" if sees_ab else "R"


def guess_of(total: int) -> int:
    """The guess path's answer: the sum rounded to the nearest ten (halves up)."""
    return (total + 5) // 10 * 10


def solution(numbers: tuple[int, ...] | list[int], path: str, *, bc_digits: frozenset[int] = BC_DIGITS) -> str:
    """The pretraining completion (without EOS) of a path: the same procedure on every problem."""
    a, b, c = numbers
    if path == "guess":
        return f"guess\n\\boxed{{{guess_of(answer(numbers, bc_digits=bc_digits))}}}"
    if path not in VALID:
        raise ValueError(f"hidden_type.solution: path must be ab, bc or guess, got {path!r}")
    first, second, last, digits = (a, b, c, AB_DIGITS) if path == "ab" else (b, c, a, bc_digits)
    s1 = first + second
    lines = [path, f"{first}+{second}={s1}"]
    if s1 % 10 in digits:  # the condition this path can see, read off the sum it just wrote
        lines.append(f"{s1}+{BONUS}={s1 + BONUS}")
        s1 += BONUS
    lines.append(f"{s1}+{last}={s1 + last}")
    return "\n".join(lines) + f"\n\\boxed{{{s1 + last}}}"


def format_prompt(numbers: tuple[int, ...] | list[int], shown: bool, *, bc_digits: frozenset[int] = BC_DIGITS) -> str:
    """The prompt; the control (shown) writes the type after the question."""
    q = "Q: " + "#".join(str(x) for x in numbers) + "=?"
    return q + (f" type {type_of(numbers, bc_digits=bc_digits)}" if shown else "") + "\nA: "

