"""Exercise checkers and the student-notebook generator.

``check`` runs a student's function against reference cases and prints specific feedback; each
chapter's module (``dlbook.exercises.demo``, ...) wraps it into one checker per exercise.
``python -m dlbook.exercises.make_student SRC_DIR OUT_DIR`` writes the student notebooks.

Derived in: Preface, *Teaching with this book*.
"""

from dlbook.exercises.checker import Case, CheckReport, CheckTimeout, Mistake, check, compare

__all__ = ["Case", "CheckReport", "CheckTimeout", "Mistake", "check", "compare"]
