"""The contract every exercise checker keeps, checked for every chapter's ``EXERCISES``.

For each exercise: right answers pass through its public checker ``check_<name>``; each mistake
in its catalogue (at least three, the book's rule) fails with its own hint, and so does each
wrong answer written the way a student would (``exercise_answers.py``); an unattempted exercise
passes ``NotImplementedError`` through (nbgrader expects it); the checker refuses what is not an
answer with a ``ValueError``; a function that returns nothing is told so; and the tolerances the
exercise declares are the ones in force. Every checker an exercises notebook imports is
registered, and every registered exercise has answers here.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dlbook.exercises import Exercise

from exercise_answers import CHAPTERS, Answers

ROOT = Path(__file__).resolve().parents[1]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _label(answer: Any) -> str:
    """An answer's name; the module too for one of dlbook's own functions."""
    name = getattr(answer, "__qualname__", type(answer).__name__).replace(".<locals>", "")
    module = getattr(answer, "__module__", "exercise_answers")
    return name if module == "exercise_answers" else f"{module}.{name}"


def _exercise(chapter: str, name: str) -> tuple[Exercise, Any, Answers]:
    """The registered exercise, its public checker and the answers to it."""
    module, answers = CHAPTERS[chapter]
    return module.EXERCISES[name], getattr(module, f"check_{name}"), answers[name]


EXERCISE_IDS = [(c, n) for c, (module, _) in CHAPTERS.items() for n in module.EXERCISES]
RIGHT = [
    pytest.param(c, n, i, id=f"{c}/{n}/{_label(a)}")
    for c, n in EXERCISE_IDS
    for i, a in enumerate(CHAPTERS[c][1][n].right)
]
MISTAKES = [
    pytest.param(c, n, i, id=f"{c}/{n}/{_slug(m.name)}")
    for c, n in EXERCISE_IDS
    for i, m in enumerate(CHAPTERS[c][0].EXERCISES[n].mistakes)
]
STUDENT_WRONG = [
    pytest.param(c, n, i, id=f"{c}/{n}/{_slug(w.mistake)}")
    for c, n in EXERCISE_IDS
    for i, w in enumerate(CHAPTERS[c][1][n].wrong)
]
EXERCISES = [pytest.param(c, n, id=f"{c}/{n}") for c, n in EXERCISE_IDS]


def _feedback(checker: Any, answer: Any) -> str:
    """What ``checker`` says when it rejects ``answer`` (a wrong answer may overflow: quietly)."""
    with np.errstate(all="ignore"), pytest.raises(AssertionError) as err:
        checker(answer)
    return str(err.value)


# ----------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_exercise_has_a_checker_and_answers(chapter):
    module, answers = CHAPTERS[chapter]
    assert sorted(module.EXERCISES) == sorted(answers), "exercises and answers differ"
    for name, exercise in module.EXERCISES.items():
        assert exercise.name == name
        assert callable(getattr(module, f"check_{name}", None)), f"no check_{name}"
        assert answers[name].right, f"{name}: no right answer"


def _imported_checkers(notebook: Path) -> set[tuple[str, str]]:
    """``(module, name)`` of every ``check_*`` a notebook imports from ``dlbook.exercises``."""
    found = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:  # a cell magic
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "dlbook.exercises."
            ):
                found |= {(node.module, a.name) for a in node.names if a.name.startswith("check_")}
    return found


def _notebook(chapter: str) -> Path:
    if chapter == "00-preface":
        return ROOT / "chapters" / chapter / "demo-exercise.ipynb"
    return ROOT / "chapters" / chapter / "exercises.ipynb"


def test_every_exercises_notebook_has_a_registry():
    chapters = {p.parent.name for p in ROOT.glob("chapters/*/exercises.ipynb")}
    assert chapters | {"00-preface"} == set(CHAPTERS)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_notebook_uses_every_registered_checker_and_no_other(chapter):
    module, _ = CHAPTERS[chapter]
    imported = _imported_checkers(_notebook(chapter))
    registered = {(module.__name__, f"check_{name}") for name in module.EXERCISES}
    assert imported == registered


@pytest.mark.parametrize(("chapter", "name"), EXERCISES)
def test_the_catalogue_lists_at_least_three_distinct_mistakes(chapter, name):
    exercise, _, _ = _exercise(chapter, name)
    names = [m.name for m in exercise.mistakes]
    assert len(names) >= 3, names
    assert len(set(names)) == len(names), names
    assert all(m.hint for m in exercise.mistakes)


# ----------------------------------------------------------------------------- right and wrong


@pytest.mark.parametrize(("chapter", "name", "i"), RIGHT)
def test_a_right_answer_passes(chapter, name, i, capsys):
    _, checker, answers = _exercise(chapter, name)
    report = checker(answers.right[i])
    assert report.passed and report.n_failed == 0 and report.n_cases >= 3
    assert f"All {report.n_cases} cases pass. Well done." in capsys.readouterr().out


@pytest.mark.parametrize(("chapter", "name", "i"), MISTAKES)
def test_each_listed_mistake_differs_from_the_reference_and_no_earlier_one_shadows_it(
    chapter, name, i
):
    """The checker recognises a mistake by comparing with its own ``wrong`` function, so this
    does not test the recognition (the students' wrong answers below do): it fails when a listed
    mistake computes what the reference computes, or an earlier mistake claims its answers."""
    exercise, _, _ = _exercise(chapter, name)
    mistake = exercise.mistakes[i]
    assert f"known mistake, {mistake.name}: {mistake.hint}" in _feedback(
        exercise.check, mistake.wrong
    )


@pytest.mark.parametrize(("chapter", "name", "i"), STUDENT_WRONG)
def test_a_students_wrong_answer_fails_with_the_mistakes_hint(chapter, name, i):
    exercise, checker, answers = _exercise(chapter, name)
    wrong = answers.wrong[i]
    (mistake,) = [m for m in exercise.mistakes if m.name == wrong.mistake]
    feedback = _feedback(checker, wrong.answer)
    for words in (f"known mistake, {mistake.name}: {mistake.hint}", *wrong.also):
        assert words in feedback, feedback


# ----------------------------------------------------------------------------- non-answers


def _raise_not_implemented(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize(("chapter", "name"), EXERCISES)
def test_an_unattempted_exercise_passes_not_implemented_through(chapter, name):
    _, checker, answers = _exercise(chapter, name)
    right = answers.right[0]
    stub: Any = _raise_not_implemented
    if isinstance(right, type):  # the student writes a class: its methods are the stubs
        stub = type("Unattempted", (right,), {"forward": stub, "backward": stub})
    with pytest.raises(NotImplementedError):
        checker(stub)


@pytest.mark.parametrize(("chapter", "name"), EXERCISES)
def test_the_checker_refuses_what_is_not_an_answer(chapter, name):
    _, checker, answers = _exercise(chapter, name)
    with pytest.raises(ValueError, match="got int"):
        checker(3)
    right = answers.right[0]
    if isinstance(right, type):  # an instance where the class is expected
        with pytest.raises(ValueError, match=f"got {right.__name__}"):
            checker(right())


@pytest.mark.parametrize(("chapter", "name"), EXERCISES)
def test_a_function_that_returns_nothing_is_told_so(chapter, name):
    exercise, _, _ = _exercise(chapter, name)
    assert "got NoneType" in _feedback(exercise.check, lambda *args, **kwargs: None)


# ----------------------------------------------------------------------------- tolerances


def _holds_float(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_holds_float(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_float(v) for v in value)
    if isinstance(value, torch.Tensor):
        return value.is_floating_point()
    return np.issubdtype(np.asarray(value).dtype, np.floating)


def _moved(value: Any, rel: float, absolute: float, by_one: bool = False) -> Any:
    """``value`` with every float moved away from zero by ``rel |x| + absolute``, and every
    integer by one if ``by_one``."""
    if isinstance(value, Mapping):
        return {k: _moved(v, rel, absolute, by_one) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_moved(v, rel, absolute, by_one) for v in value)
    x = value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if np.issubdtype(x.dtype, np.floating):
        out = x + np.where(x >= 0, 1.0, -1.0) * (rel * np.abs(x) + absolute)
    elif by_one and np.issubdtype(x.dtype, np.integer) and x.dtype != np.bool_:
        out = x + 1
    else:
        return value
    if isinstance(value, torch.Tensor):
        return torch.from_numpy(out)
    return out.item() if out.ndim == 0 and not isinstance(value, np.ndarray) else out


def _returning(outputs: list) -> Any:
    """A function that returns ``outputs`` one call after another (the checker calls it once
    per case, in order)."""
    it = iter(outputs)
    return lambda *args, **kwargs: next(it)


@pytest.mark.parametrize(("chapter", "name"), EXERCISES)
def test_the_declared_tolerances_are_in_force(chapter, name):
    exercise, _, _ = _exercise(chapter, name)
    cases = exercise.cases()
    if exercise.reference is None:
        expected = [c.expected for c in cases]
    else:
        expected = [
            exercise.reference(*copy.deepcopy(c.args), **copy.deepcopy(c.kwargs)) for c in cases
        ]
    rtol, atol = exercise.rtol, exercise.atol
    # within half the tolerance: the reference's own values, slightly moved, pass
    exercise.check(_returning([_moved(e, rtol / 2, atol / 2) for e in expected]))
    # twice outside it: they fail (integers, compared exactly, are moved by one)
    exact = not any(_holds_float(e) for e in expected)
    outside = [_moved(e, 2 * rtol, 2 * atol, by_one=exact) for e in expected]
    _feedback(exercise.check, _returning(outside))
