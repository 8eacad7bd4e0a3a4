"""Benchmark verifier.py: throughput on a realistic mix (default and lenient mode), worst-case
latency on adversarial inputs in both modes, and (when math-verify is importable) its speed
and its verdicts on our labelled table.

    python bench/verifier.py                      # ours only
    python bench/verifier.py --property 5000      # never pay a wrong answer, on generated
                                                  # pairs (tests/test_verifier_property.py)

To compare with math-verify (never a dependency of this repository), install it into an
environment of its own and run the same script with that environment's Python:

    python -m venv ~/mv-env
    ~/mv-env/bin/pip install "math-verify==0.9.0"
    ~/mv-env/bin/python bench/verifier.py         # ours beside math-verify

Single process, single thread, throughput in verifications per CPU-second; ratios are
measured in the same process so a loaded machine affects both sides alike.
"""

import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_verifier_cases import (ADVERSARIAL, ADVERSARIAL_GOLDS, LENIENT, PAIRS,  # noqa: E402
                                 RESPONSES)
import verifier  # noqa: E402
from verifier import verify  # noqa: E402

try:  # optional comparison, only in an environment of its own (see the docstring)
    import math_verify
except ImportError:
    math_verify = None

# (gold, equivalent forms a model might write, wrong answers)
GOLDS = [
    ("18", ["18", "18.0", "\\$18", "18 \\text{ dollars}"], ["17", "81"]),
    ("1,234", ["1234", "1{,}234", "1,234"], ["1243", "12,34"]),
    ("\\frac{3}{4}", ["\\dfrac{3}{4}", "0.75", "3/4", "\\frac34"], ["\\frac{4}{3}", "0.7"]),
    ("\\frac{\\sqrt{3}}{2}", ["\\frac{\\sqrt3}{2}", "\\frac{1}{2}\\sqrt{3}"],
     ["\\sqrt{3}", "\\frac{3}{2}"]),
    ("2\\sqrt{5}", ["\\sqrt{20}", "2\\sqrt5"], ["\\sqrt{10}", "5\\sqrt{2}"]),
    ("(1, -2)", ["(1,-2)", "\\left(1, -2\\right)"], ["(-2, 1)", "(1, 2)"]),
    ("[2, 5)", ["[2,5)"], ["[2, 5]", "(2, 5)"]),
    ("3, -1", ["-1, 3", "x = 3, x = -1"], ["3", "-3, 1"]),
    ("\\text{(C)}", ["(C)", "C", "\\textbf{(C)}"], ["(B)", "D"]),
    ("45^\\circ", ["45", "45^{\\circ}"], ["135"]),
    ("25\\%", ["25", "0.25", "25\\%"], ["0.025", "2.5"]),
    ("x^2 + 2x + 1", ["(x+1)^2", "x^2+2x+1"], ["x^2+1"]),
    ("\\pi", ["\\pi", "3.14159265"], ["3.14", "2\\pi"]),
    ("\\frac{7}{2}", ["3.5", "3\\frac{1}{2}"], ["\\frac{2}{7}"]),
    ("12", ["12", "x = 12"], ["21", "13"]),
]
FILLER = ("Let us compute step by step. First we simplify the expression, then we substitute "
          "the values and check the constraint. ")


def make_mix(n: int, long_frac: float, seed: int = 0) -> list[tuple[str, str, bool]]:
    """n (response, gold, label) rows: short responses (~300 chars), a long_frac of ~8 kB."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        gold, good, bad = rng.choice(GOLDS)
        label = rng.random() < 0.6
        ans = rng.choice(good if label else bad)
        reps = 70 if rng.random() < long_frac else 2
        out.append((FILLER * reps + f"So the final answer is $\\boxed{{{ans}}}$.", gold, label))
    return out


def throughput(fn, pairs, min_time=1.0) -> tuple[float, float]:
    """(verifications per CPU-second, per wall-second) of fn over pairs, repeated until
    min_time CPU seconds have passed. CPU time of this one-thread process is what other jobs
    on a shared machine inflate least; both sides of every ratio are measured the same way."""
    n, t0, w0 = 0, time.process_time(), time.perf_counter()
    while True:
        for r, g, _ in pairs:
            fn(r, g)
        n += len(pairs)
        dt = time.process_time() - t0
        if dt >= min_time:
            return n / dt, n / (time.perf_counter() - w0)


def verify_cold(response: str, gold: str, lenient: bool = False) -> bool:
    """verify() with its caches emptied first: no help from repeated golds or answers."""
    verifier.normalize.cache_clear()
    verifier._parsed.cache_clear()
    return verify(response, gold, lenient=lenient)


def mv_verify(response: str, gold: str) -> bool:
    g = gold if "\\boxed" in gold else f"${gold}$"
    try:
        return bool(math_verify.verify(math_verify.parse(g), math_verify.parse(response)))
    except Exception:
        return False


def labelled_rows() -> list[tuple[str, str, bool]]:
    rows = []
    for a, b, eq, _ in PAIRS:
        rows.append((f"So the answer is $\\boxed{{{a}}}$.", b, eq))
        rows.append((f"So the answer is $\\boxed{{{b}}}$.", a, eq))
    rows += [(r, g, e) for r, g, e, _ in RESPONSES]
    return rows


def property_report(n: int, seed: int = 0) -> int:
    """The generated pairs of tests/test_verifier_property.py on n values: counts, and every
    wrong answer paid (the grader's promise) or right answer refused (a form it claims)."""
    from test_verifier_property import check
    t0 = time.perf_counter()
    stats = check(n, seed)
    dt = time.perf_counter() - t0
    print(f"property, {n:,} values (seed {seed}): {stats['tried']:,} pairs tried, "
          f"{stats['paid']:,} paid, {stats['refused']:,} refused in {dt:.1f} s")
    print(f"wrong answers paid   : {len(stats['wrong_paid'])} "
          f"(+ {len(stats['known'])} known failures)")
    print(f"right answers refused: {len(stats['right_refused'])}")
    for what, mode, response, gold in (stats["wrong_paid"] + stats["right_refused"])[:20]:
        print(f"   {what} [{mode}] gold={gold!r} response={response[-60:]!r}")
    return 1 if stats["wrong_paid"] or stats["right_refused"] else 0


def main():
    if sys.argv[1:2] == ["--property"]:
        n = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
        return property_report(n, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    short = make_mix(1000, long_frac=0.0)
    mixed = make_mix(1000, long_frac=0.1, seed=1)
    ours_short, w1 = throughput(verify_cold, short)
    ours_mixed, w2 = throughput(verify_cold, mixed)
    warm_short, w3 = throughput(verify, short)
    print("throughput in verifications per CPU-second (per wall-second in brackets)")
    print(f"ours        short boxed responses : {ours_short:10,.0f} ({w1:,.0f})  cold caches")
    print(f"ours        mix (10% ~8 kB)       : {ours_mixed:10,.0f} ({w2:,.0f})  cold caches")
    print(f"ours        short, warm caches    : {warm_short:10,.0f} ({w3:,.0f})  golds repeat")

    lenient_short, w6 = throughput(lambda r, g: verify_cold(r, g, lenient=True), short)
    prose = [(r.replace("So the final answer is $\\boxed{", "So it is ").replace("}$.", "."), g, e)
             for r, g, e in short]
    lenient_prose, w7 = throughput(lambda r, g: verify_cold(r, g, lenient=True), prose)
    print(f"ours        lenient, short boxed  : {lenient_short:10,.0f} ({w6:,.0f})  cold caches")
    print(f"ours        lenient, prose endings: {lenient_prose:10,.0f} ({w7:,.0f})  cold caches")

    for lenient in (False, True):
        worst, worst_in = 0.0, ""
        for text in ADVERSARIAL:
            for gold in ADVERSARIAL_GOLDS + [text[:5000]]:
                t0 = time.perf_counter()
                verify(text, gold, lenient=lenient)
                dt = time.perf_counter() - t0
                if dt > worst:
                    worst, worst_in = dt, text[:40]
        mode = "lenient" if lenient else "default"
        print(f"ours        slowest adversarial call ({mode}): {worst * 1e3:.2f} ms  "
              f"(input {worst_in!r}...)")

    rows = labelled_rows()
    ours_wrong = sum(verify(r, g) != e for r, g, e in rows)
    mix_rows = sorted(set(mixed[:400]))
    ours_mix_wrong = sum(verify(r, g) != e for r, g, e in mix_rows)
    lenient_wrong = sum(verify(r, g, lenient=True) != e for r, g, e, _ in LENIENT)
    print(f"ours        label disagreements   : {ours_wrong} / {len(rows)} (test table), "
          f"{ours_mix_wrong} / {len(mix_rows)} (bench mix), {lenient_wrong} / {len(LENIENT)} "
          f"(lenient table, lenient=True)")
    if math_verify is None:
        print("math-verify not importable: to compare, see this script's docstring (a separate\n"
              "environment: python -m venv ~/mv-env && ~/mv-env/bin/pip install\n"
              "'math-verify==0.9.0', then run ~/mv-env/bin/python bench/verifier.py)")
        return
    (mv_short, w4), (mv_mixed, w5) = (throughput(mv_verify, short[:150], min_time=3.0),
                                      throughput(mv_verify, mixed[:150], min_time=3.0))
    print(f"math-verify short boxed responses : {mv_short:10,.0f} ({w4:,.0f})")
    print(f"math-verify mix (10% ~8 kB)       : {mv_mixed:10,.0f} ({w5:,.0f})")
    mv_wrong, both, examples = 0, 0, []
    for r, g, e in rows:
        mv = mv_verify(r, g)
        mv_wrong += mv != e
        both += mv != e and verify(r, g) != e
        if mv != e and len(examples) < 12:
            examples.append(f"   mv={mv!s:5} label={e!s:5} gold={g[:30]!r} "
                            f"response={r[-50:]!r}")
    mv_mix_wrong = sum(mv_verify(r, g) != e for r, g, e in mix_rows)
    print(f"math-verify label disagreements   : {mv_wrong} / {len(rows)} (test table, {both} shared "
          f"with ours), {mv_mix_wrong} / {len(mix_rows)} (bench mix)")
    print(f"ratio ours/math-verify throughput : short {ours_short / mv_short:.1f}x, mix "
          f"{ours_mixed / mv_mixed:.1f}x (cold caches; warm short {warm_short / mv_short:.1f}x)")
    print("some math-verify disagreements:")
    print("\n".join(examples))


if __name__ == "__main__":
    sys.exit(main())
