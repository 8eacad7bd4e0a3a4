"""The grader's parts, used by verifier.py (standard library only, no eval):

    extract.py      finds the final answer in a response (boxes, markers) and in a gold string
    canonical.py    normalises an answer's text (LaTeX, units, spacing) and splits it at top level
    arithmetic.py   a bounded arithmetic parser: exact values of numbers and expressions, never eval
    numeric.py      numbers as exact rationals with a relative tolerance; expressions at fixed points
    relations.py    inequalities and chains (x < 3, 1 <= x <= 2)
    lenient.py      reads an unmarked conclusion ("so the answer is 5") for verify(..., lenient=True)
    explain.py      what `python verifier.py RESPONSE GOLD` prints: each answer verify() compared, in order

Imports flow one way: verifier.py -> these; numeric -> arithmetic; nothing here imports the project.
"""
