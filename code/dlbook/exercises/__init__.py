"""Exercise checkers and the student-notebook generator.

``check`` runs a student's function against reference cases and prints specific feedback; each
chapter's module (``dlbook.exercises.demo``, ``backprop``, ``attention``, ``gpt``, ``gan``,
``rl``, ``rlhf``) wraps it into one checker per exercise, ``check_<name>``, which the exercise
notebooks import.

Each chapter's module lists its exercises in ``EXERCISES``, a dict from the name of the function
the student writes to an :class:`Exercise`: the cases the checker runs, the reference that
computes the expected answers, the tolerances, and the plausible mistakes it recognises, each
with the hint a student who made it sees. A teacher can read what a checker will say::

    from dlbook.exercises import backprop
    for m in backprop.EXERCISES["linear_backward"].mistakes:
        print(f"{m.name}: {m.hint}")

The package holds no solutions, since students import it: the right answers, and wrong answers
written the way students write them, live in the book's tests (``tests/exercise_answers.py``),
which check every registered exercise against the same contract.

``python -m dlbook.exercises.make_student SRC_DIR OUT_DIR`` writes the student notebooks.

Derived in: Preface, *Teaching with this book*.
"""

from dlbook.exercises.checker import (
    Case,
    CheckReport,
    CheckTimeout,
    Exercise,
    Mistake,
    check,
    compare,
)

__all__ = ["Case", "CheckReport", "CheckTimeout", "Exercise", "Mistake", "check", "compare"]
