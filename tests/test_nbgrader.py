"""nbgrader 0.9 grades every exercise notebook, run the way a teacher runs it.

For each exercise notebook, in a fresh course folder with its own ``nbgrader_config.py`` and
gradebook: ``python -m dlbook.exercises.make_student --annotate source/ASSIGNMENT``, then the real
``nbgrader generate_assignment`` and one ``nbgrader autograde`` of three submissions:

- ``instructor``, the annotated notebook itself: every autograded point, and the written answers
  waiting for the teacher; once the teacher gives those full marks, full marks overall;
- ``untouched``, the released notebook as handed out: 0 points, every test failing with the
  checkers' ``NotImplementedError``;
- ``one_wrong``, the released notebook with every exercise answered correctly except one, which
  holds a plausible wrong answer (written the way a student would write it; its mistake is in the
  checker's catalogue): it loses exactly that exercise's points, and the test cell's error output
  in the autograded notebook names the mistake. This student also tampers with read-only cells
  (replaces that exercise's checker call by ``pass``, edits the title), which nbgrader must undo.

Wrong annotations this catches: test cells that are not graded (0 of 0 points) or have the wrong
points (the table below is the spec), solution text or a worked answer that reaches the released
notebook, read-only cells that are not locked (the edit of the title would survive; nbgrader
locks test cells whatever their metadata says), duplicate grade_ids (nbgrader refuses them), and
an annotation that changes when run twice.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from dlbook.exercises import attention, backprop, demo, gan, gpt, rl, rlhf
from dlbook.exercises import make_student as ms

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NBGRADER = BIN / "nbgrader"
STUDENTS = ("instructor", "untouched", "one_wrong")
CONFIG = """\
c = get_config()
c.CourseDirectory.course_id = "backprop-to-gpt"
c.Execute.timeout = 300  # seconds per cell
"""


@dataclass(frozen=True)
class WrongAnswer:
    """A student's plausible wrong solution to one exercise, and the mistake it makes."""

    function: str  # what the solution cell defines and the test cell checks
    source: str  # the student's whole solution cell
    catalogue: list  # the checker's list of Mistakes
    mistake: str  # the name the feedback must show


@dataclass(frozen=True)
class Assignment:
    """One exercise notebook as an nbgrader assignment, with what grading it must give."""

    notebook: str  # relative to the repository root
    auto_points: int  # autograded points: one per checker call
    written: int  # answers graded by hand, 1 point each
    wrong: WrongAnswer

    @property
    def name(self) -> str:
        return Path(self.notebook).parent.name


ASSIGNMENTS = [
    Assignment(
        "chapters/00-preface/demo-exercise.ipynb",
        auto_points=2,
        written=1,
        wrong=WrongAnswer(
            "mse",
            "def mse(y_pred, y):\n    return float(((y_pred - y) ** 2).sum())\n",
            demo.MSE_MISTAKES,
            "a sum instead of a mean",
        ),
    ),
    Assignment(
        "chapters/01-backprop/exercises.ipynb",
        auto_points=9,
        written=1,
        wrong=WrongAnswer(
            "linear_backward",
            "def linear_backward(X, W, b, dY):\n"
            '    return {"dX": dY @ W, "dW": X.T @ dY, "db": dY.sum(axis=0)}\n',
            backprop.LINEAR_MISTAKES,
            "transposed dW (X^T Delta)",
        ),
    ),
    Assignment(
        "chapters/02-attention/exercises.ipynb",
        auto_points=6,
        written=1,
        wrong=WrongAnswer(
            "multi_head_attention",
            "def multi_head_attention(x, w_in, b_in, w_out, b_out, h):\n"
            "    B, T, d = x.shape\n"
            "    q, k, v = torch.chunk(x @ w_in.t() + b_in, 3, dim=-1)\n"
            "    q, k, v = (z.view(B, T, h, d // h).transpose(1, 2) for z in (q, k, v))\n"
            "    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)\n"
            "    return out.transpose(1, 2).reshape(B, T, d)  # forgot w_out and b_out\n",
            attention.MULTI_HEAD_MISTAKES,
            "no output projection",
        ),
    ),
    Assignment(
        "chapters/03-gpt/exercises.ipynb",
        auto_points=3,
        written=2,
        wrong=WrongAnswer(
            "causal_attention",
            "def causal_attention(q, k, v):\n"
            "    T = q.shape[-2]\n"
            "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)\n"
            "    scores = scores.masked_fill(future, 0.0)\n"
            "    return torch.softmax(scores, dim=-1) @ v\n",
            gpt.CAUSAL_MISTAKES,
            "masked with 0 instead of -inf",
        ),
    ),
    Assignment(
        "chapters/04-gans/exercises.ipynb",
        auto_points=4,
        written=2,
        wrong=WrongAnswer(
            "d_star",
            "def d_star(p_data, p_g):\n    return p_g / (p_data + p_g)\n",
            gan.D_STAR_MISTAKES,
            "p_g on top",
        ),
    ),
    Assignment(
        "chapters/05-rl/exercises.ipynb",
        auto_points=4,
        written=1,
        wrong=WrongAnswer(
            "ppo_clip_objective",
            "def ppo_clip_objective(logp_new, logp_old, adv, eps):\n"
            "    ratio = np.exp(logp_new - logp_old)\n"
            "    clipped = np.clip(ratio, 1 - eps, 1 + eps)\n"
            "    return float(np.maximum(ratio * adv, clipped * adv).mean())\n",
            rl.PPO_MISTAKES,
            "max instead of min",
        ),
    ),
    Assignment(
        "chapters/06-assistant/exercises.ipynb",
        auto_points=4,
        written=1,
        wrong=WrongAnswer(
            "dpo_loss",
            "def dpo_loss(logp_c, logp_r, ref_logp_c, ref_logp_r, beta):\n"
            "    return -F.logsigmoid(beta * (logp_c - logp_r)).mean()\n",
            rlhf.DPO_MISTAKES,
            "the reference model forgotten",
        ),
    ),
]


def test_every_exercise_notebook_is_an_assignment():
    exercises = {str(p.relative_to(ROOT)) for p in ROOT.glob("chapters/*/exercises.ipynb")}
    covered = {a.notebook for a in ASSIGNMENTS}
    assert exercises <= covered, (
        f"exercise notebooks without an nbgrader test: {exercises - covered}"
    )
    for a in ASSIGNMENTS:
        assert a.wrong.mistake in [m.name for m in a.wrong.catalogue], a.wrong.mistake


def test_the_teaching_page_shows_these_steps():
    page = (ROOT / "chapters/00-preface/teaching.md").read_text()
    assert CONFIG in page, "the page's nbgrader_config.py differs from the one tested here"
    for command in (
        "python -m dlbook.exercises.make_student --annotate source/",
        "nbgrader generate_assignment 01-backprop",
        "nbgrader autograde 01-backprop",
    ):
        assert command in page, command


# ----------------------------------------------------------------------------- running nbgrader


def _run(args: list[str], course: Path, env: dict[str, str]) -> str:
    """Run a command in the course folder; its output, or a failure that shows it."""
    proc = subprocess.run(
        args, cwd=course, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{output[-6000:]}"
    return output


def _course(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty course folder with its own config, and the environment to run nbgrader in.

    nbgrader runs in the course folder, so that is its course root and the gradebook is
    ``gradebook.db`` there.
    """
    assert NBGRADER.exists(), f"{NBGRADER} is missing: pip install -r requirements.txt"
    course = tmp_path / "course"
    course.mkdir()
    (course / "nbgrader_config.py").write_text(CONFIG)  # the teaching page's, word for word
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),  # no user config sneaks in
        "DLBOOK_DATA": str(tmp_path / "data-cache"),  # empty: the exercises download nothing
        "DLBOOK_DEVICE": "cpu",
    }
    return course, env


def _answered(source: str) -> str:
    """A solution cell as the student who solved it writes it: the markers are not there."""
    markers = (ms.BEGIN_SOLUTION, ms.END_SOLUTION)
    return "\n".join(line for line in source.split("\n") if line.strip() not in markers)


def _one_wrong(
    instructor: nbformat.NotebookNode, released: nbformat.NotebookNode, wrong: WrongAnswer
) -> tuple[nbformat.NotebookNode, int]:
    """The released notebook answered correctly except ``wrong``; some read-only cells edited.

    Every cell that nbgrader left a stub in is answered with the instructor's text, except the one
    that defines ``wrong.function``, which gets ``wrong.source``. The student also replaces the
    checker call on ``wrong.function`` by ``pass`` and adds a line to the title cell.

    Returns:
        The submission, and the index of the test cell that checks the wrong answer.
    """
    assert len(released.cells) == len(instructor.cells), "nbgrader released other cells"
    submission = copy.deepcopy(released)
    defines = re.compile(rf"^(def|class) {wrong.function}\b", re.M)
    checks = re.compile(rf"check_\w+\({wrong.function}\);?")
    test_index = None
    for i, (cell, original) in enumerate(zip(submission.cells, instructor.cells)):
        stub = "raise NotImplementedError()" in cell.source or ms.ANSWER_STUB in cell.source
        if stub and defines.search(original.source):
            cell.source = wrong.source
        elif stub:
            cell.source = _answered(original.source)
        elif checks.fullmatch(original.source.strip()):
            test_index, cell.source = i, "pass  # nothing to check here"
    assert test_index is not None, f"no cell checks {wrong.function} alone"
    submission.cells[0].source += "\n\n(All exercises: full marks.)"
    return submission, test_index


def _grade_id(cell: nbformat.NotebookNode) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _errors(cell: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for o in cell.get("outputs", []) if o.output_type == "error"]


# ----------------------------------------------------------------------------- the test


@pytest.mark.parametrize("a", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
def test_nbgrader_grades_the_exercise_notebook(a: Assignment, tmp_path):
    from nbgrader.api import Gradebook

    course, env = _course(tmp_path)
    name = Path(a.notebook).name
    source = course / "source" / a.name / name
    source.parent.mkdir(parents=True)
    shutil.copy(ROOT / a.notebook, source)
    instructor = nbformat.read(source, as_version=4)

    # annotate, twice: the second time changes nothing
    annotate = [sys.executable, "-m", "dlbook.exercises.make_student", "--annotate"]
    _run([*annotate, str(source.parent)], course, env)
    annotated_text = source.read_text()
    annotated = nbformat.reads(annotated_text, as_version=4)
    assert [c.source for c in annotated.cells] == [c.source for c in instructor.cells]
    _run([*annotate, str(source.parent)], course, env)
    assert source.read_text() == annotated_text, "annotating twice changed the notebook"

    # release: no solution text, no worked answer, no marker
    _run([str(NBGRADER), "generate_assignment", a.name], course, env)
    released = nbformat.read(course / "release" / a.name / name, as_version=4)
    text = "\n".join(c.source for c in released.cells)
    leaked = [line for line in ms.solution_lines(instructor) if line in text]
    assert not leaked, f"solution text in nbgrader's released notebook: {leaked}"
    assert not any(m in text for m in ms.MARKERS)

    # three students hand in; one autograde
    one_wrong, test_index = _one_wrong(instructor, released, a.wrong)
    submissions = {"instructor": annotated, "untouched": released, "one_wrong": one_wrong}
    for student, nb in submissions.items():
        path = course / "submitted" / student / a.name / name
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    _run([str(NBGRADER), "autograde", a.name], course, env)
    cache = tmp_path / "data-cache"
    assert not cache.exists() or not any(cache.iterdir()), "an exercise notebook downloaded data"
    autograded = {
        s: nbformat.read(course / "autograded" / s / a.name / name, as_version=4) for s in STUDENTS
    }
    cells = {s: {_grade_id(c): c for c in nb.cells if _grade_id(c)} for s, nb in autograded.items()}
    wrong_test = _grade_id(annotated.cells[test_index])

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grades = {
            s: {g.name: g for g in gb.find_submission_notebook(source.stem, a.name, s).grades}
            for s in STUDENTS
        }
        auto = {k: g for k, g in grades["instructor"].items() if g.cell.cell_type == "code"}
        by_hand = {k: g for k, g in grades["instructor"].items() if g.cell.cell_type != "code"}
        assert sum(g.max_score for g in auto.values()) == a.auto_points, (
            f"autograded points: expected {a.auto_points} (one per checker call), got "
            f"{ {k: g.max_score for k, g in auto.items()} }; update the table if an exercise "
            "was added"
        )
        assert [g.max_score for g in by_hand.values()] == [1] * a.written, "written answers"
        max_score = a.auto_points + a.written
        assert gb.find_submission(a.name, "instructor").max_score == max_score

        # (a) the instructor: every autograded point; the written answers wait for the teacher
        for k, g in auto.items():
            assert g.auto_score == g.max_score, (k, _errors(cells["instructor"][k]))
            results = [
                o for o in cells["instructor"][k].outputs if o.output_type == "execute_result"
            ]
            assert not results, f"{k}: a result value, which nbgrader reads as a partial grade"
        assert all(g.auto_score is None and g.needs_manual_grade for g in by_hand.values())

        # (b) untouched: 0, every checker stopped by NotImplementedError, nothing to grade by hand
        for g in grades["untouched"].values():
            assert g.auto_score == 0 and not g.needs_manual_grade, g.name
        for k in auto:
            assert [e.ename for e in _errors(cells["untouched"][k])] == ["NotImplementedError"]
        assert gb.find_submission(a.name, "untouched").score == 0

        # (c) one wrong answer: exactly its exercise's points lost, and the feedback names it
        lost = {k for k in auto if grades["one_wrong"][k].auto_score != auto[k].max_score}
        assert lost == {wrong_test}, {k: _errors(cells["one_wrong"][k]) for k in lost}
        feedback = autograded["one_wrong"].cells[test_index]
        assert feedback.source == instructor.cells[test_index].source, "the edited test survived"
        errors = _errors(feedback)
        assert [e.ename for e in errors] == ["AssertionError"], errors
        assert f"known mistake, {a.wrong.mistake}:" in "\n".join(errors[0].traceback)
        title = autograded["one_wrong"].cells[0].source
        assert title == instructor.cells[0].source, "a student's edit of a read-only cell survived"

        # the teacher grades the written answers: full marks for the instructor's
        for s in ("instructor", "one_wrong"):
            for g in grades[s].values():
                if g.needs_manual_grade:
                    g.manual_score = g.max_score
        gb.db.commit()
        assert gb.find_submission(a.name, "instructor").score == max_score
        lost_points = auto[wrong_test].max_score
        assert gb.find_submission(a.name, "one_wrong").score == max_score - lost_points
