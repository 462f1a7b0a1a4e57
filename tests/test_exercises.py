"""dlbook.exercises: checkers give specific feedback; student notebooks hold no solutions."""

from __future__ import annotations

import contextlib
import copy
import re
import time

import nbformat
import numpy as np
import pytest
import torch

from dlbook.exercises import Case, Mistake, check, compare
from dlbook.exercises import make_student as ms
from dlbook.exercises.checker import AutogradForbidden, ForbiddenCall, switched_off

# ----------------------------------------------------------------------------- compare


def test_compare_accepts_close_values_of_every_kind():
    assert compare(1.0, 1.0 + 1e-9)[0]
    assert compare(np.ones(3), torch.ones(3, dtype=torch.float64))[0]
    assert compare({"a": np.zeros(2), "b": [1, 2]}, {"a": np.zeros(2), "b": [1, 2]})[0]
    assert compare("text", "text")[0]


def test_compare_names_the_shape_problem():
    ok, lines = compare(np.zeros((4, 3)), np.zeros((3, 4)))
    assert not ok and "expected shape (3, 4), got (4, 3)" in lines[0] and "transpose" in lines[0]
    ok, lines = compare(np.float64(2.0), np.zeros(5))
    assert not ok and "single number" in lines[0]
    ok, lines = compare(np.zeros((8, 5)), np.zeros(5))
    assert not ok and "extra leading dimension" in lines[0]


@pytest.mark.parametrize(
    ("transform", "phrase"),
    [
        (lambda e: -e, "sign is flipped"),
        (lambda e: 8 * e, "8 times the expected"),
        (lambda e: e / 32, "divided by 32"),
        (lambda e: e + 0.5, "same constant 0.5"),
        (lambda e: np.where(e > 0, np.nan, e), "NaN or inf"),
    ],
)
def test_compare_diagnoses_common_slips(transform, phrase):
    e = np.random.default_rng(0).normal(size=(4, 4))
    ok, lines = compare(transform(e), e)
    assert not ok
    assert phrase in "\n".join(lines)


def test_compare_reports_each_key_of_a_dict():
    exp = {"dW": np.ones((2, 2)), "db": np.ones(2)}
    ok, lines = compare({"dW": np.ones((2, 2)), "db": 3 * np.ones(2)}, exp)
    text = "\n".join(lines)
    assert not ok
    assert "output['dW']: \u2713" in text
    assert "output['db']: max |difference| 2" in text and "3 times" in text
    ok, lines = compare({"dW": np.ones((2, 2))}, exp)
    assert not ok and "missing key(s) ['db']" in lines[0]


# ----------------------------------------------------------------------------- check


def _cases():
    rng = np.random.default_rng(3)
    return [Case(args=(rng.normal(size=(4, 3)),), name=f"case {i}") for i in range(3)]


def test_check_passes_a_right_answer_and_prints_it(capsys):
    report = check(lambda x: x.sum(axis=0), _cases(), reference=lambda x: x.sum(axis=0))
    assert report.passed and report.n_cases == 3
    assert "All 3 cases pass" in capsys.readouterr().out


def test_check_names_a_known_mistake_and_raises():
    mistakes = [Mistake("summed over rows", lambda x: x.sum(axis=1), "sum over axis 0, the batch")]
    with pytest.raises(AssertionError) as err:
        check(
            lambda x: x.sum(axis=1),
            _cases(),
            reference=lambda x: x.sum(axis=0),
            mistakes=mistakes,
            quiet=True,
        )
    msg = str(err.value)
    assert "3 of 3 cases failed" in msg
    assert "expected shape (3,), got (4,)" in msg
    assert "known mistake, summed over rows: sum over axis 0, the batch" in msg
    assert err.value.report.n_failed == 3


def test_check_reports_exceptions_with_the_students_line():
    def broken(x):
        return x @ x  # (4, 3) @ (4, 3): shapes do not align

    with pytest.raises(AssertionError) as err:
        check(broken, _cases(), reference=lambda x: x, quiet=True)
    msg = str(err.value)
    assert "raised ValueError" in msg and "return x @ x" in msg


def test_check_passes_not_implemented_through(capsys):
    def stub(x):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        check(stub, _cases(), reference=lambda x: x)
    assert "not implemented yet" in capsys.readouterr().out


def test_check_stops_a_function_that_runs_forever():
    def forever(x):
        while True:
            time.sleep(0.01)

    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"still running after 0\.2 s"):
        check(forever, _cases()[:1], reference=lambda x: x, timeout_s=0.2, quiet=True)
    assert time.monotonic() - start < 5


def test_check_protects_inputs_from_mutation():
    def mutating(x):
        x *= 0  # spoils its argument in place
        return x

    with pytest.raises(AssertionError):
        check(mutating, _cases(), reference=lambda x: x, quiet=True)
    # the reference still saw the original inputs: a correct function passes afterwards
    check(lambda x: x, _cases(), reference=lambda x: x, quiet=True)


def test_check_validates_its_own_arguments():
    with pytest.raises(ValueError, match="expects a function"):
        check(3, _cases(), reference=lambda x: x)
    with pytest.raises(ValueError, match="at least one case"):
        check(lambda x: x, [], reference=lambda x: x)
    with pytest.raises(ValueError, match="no expected value"):
        check(lambda x: x, _cases())


# ----------------------------------------------------------------------------- switched off


SOFTMAXES = ("torch.softmax", "torch.Tensor.softmax", "torch.nn.functional.softmax")
RULE = "this exercise asks for the softmax written out"


def _softmax_cases():
    g = torch.Generator().manual_seed(0)
    return [Case(args=(torch.randn(5, generator=g, dtype=torch.float64),)) for _ in range(3)]


def _softmax_by_hand(x):
    e = torch.exp(x - x.max())
    return e / e.sum()


def _check_softmax(fn, **kwargs):
    return check(
        fn,
        _softmax_cases(),
        reference=lambda x: torch.softmax(x, -1),  # uses what the student may not
        forbidden=SOFTMAXES,
        rule=RULE,
        quiet=True,
        **kwargs,
    )


def _untouched() -> dict:
    """What ``switched_off`` patches, to compare before and after."""
    return {
        "torch.softmax": torch.softmax,
        "F.softmax": torch.nn.functional.softmax,
        "F.softmax code": torch.nn.functional.softmax.__code__,
        "Tensor.softmax own": vars(torch.Tensor).get("softmax"),
        "Tensor.backward": torch.Tensor.backward,
        "backward code": torch.Tensor.backward.__code__,
        "MHA.__init__": torch.nn.MultiheadAttention.__init__,
        "MHA.forward": torch.nn.MultiheadAttention.forward,
    }


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda x: torch.softmax(x, 0), "torch.softmax"),
        (lambda x: x.softmax(0), "torch.Tensor.softmax"),
        (lambda x: torch.nn.functional.softmax(x, 0), "torch.nn.functional.softmax"),
        (lambda x: torch.nn.Softmax(0)(x), "torch.nn.functional.softmax"),  # calls F.softmax
    ],
)
def test_a_switched_off_function_fails_the_check_with_its_name_and_the_rule(call, name):
    before = _untouched()
    with pytest.raises(AssertionError) as err:
        _check_softmax(call)
    msg = str(err.value)
    assert "3 of 3 cases failed" in msg
    assert f"raised ForbiddenCall: {RULE}: {name} is switched off while your function runs" in msg
    assert _untouched() == before  # the patch is undone
    x = torch.randn(4)
    assert torch.allclose(torch.softmax(x, 0), _softmax_by_hand(x))  # and works again


def test_a_right_answer_passes_with_the_functions_switched_off():
    report = _check_softmax(_softmax_by_hand)
    assert report.passed and report.n_cases == 3


def test_aliases_bound_before_the_check_are_switched_off_too():
    from torch import softmax as bound_early  # the builtin: the TorchFunctionMode refuses it

    from dlbook.attention import softmax_jacobian as jacobian_early  # Python: its code is swapped

    mha = torch.nn.MultiheadAttention(4, 2)  # built before: its class's forward is replaced
    x = torch.randn(3, 4)
    with switched_off(
        ("torch.softmax", "dlbook.attention.softmax_jacobian", "torch.nn.MultiheadAttention"),
        RULE,
    ):
        for call, name in [
            (lambda: bound_early(x, 0), "torch.softmax"),
            (lambda: jacobian_early(x[0]), "dlbook.attention.softmax_jacobian"),
            (lambda: mha(x, x, x), "torch.nn.MultiheadAttention"),
            (lambda: torch.nn.MultiheadAttention(4, 2), "torch.nn.MultiheadAttention"),
        ]:
            with pytest.raises(ForbiddenCall, match=f"{RULE}: {name} is switched off"):
                call()
    assert jacobian_early(x[0]).shape == (4, 4) and mha(x, x, x)[0].shape == (3, 4)


def test_everything_is_restored_after_an_exception_and_after_a_timeout():
    before = _untouched()
    paths = (*SOFTMAXES, "torch.Tensor.backward", "torch.nn.MultiheadAttention")
    with pytest.raises(KeyError), switched_off(paths, RULE):
        raise KeyError("the student's code failed")
    assert _untouched() == before

    def forever(x):
        while True:
            time.sleep(0.01)

    with pytest.raises(AssertionError, match=r"still running after 0\.2 s"):
        check(
            forever,
            _softmax_cases()[:1],
            reference=_softmax_by_hand,
            timeout_s=0.2,
            quiet=True,
            forbidden=paths,
            rule=RULE,
        )
    assert _untouched() == before


def test_references_and_known_mistakes_run_outside_the_switch():
    """The reference and the mistake use torch.softmax, which the student may not."""
    mistakes = [
        Mistake("softmax of 2x", lambda x: torch.softmax(2 * x, -1), "scores doubled somewhere")
    ]
    with pytest.raises(AssertionError) as err:
        _check_softmax(lambda x: _softmax_by_hand(2 * x), mistakes=mistakes)
    assert "known mistake, softmax of 2x: scores doubled somewhere" in str(err.value)


def test_a_guard_sees_each_case_and_may_refuse_how_an_answer_is_computed():
    seen = []

    @contextlib.contextmanager
    def no_big_tensors(case):
        seen.append(case)
        if case.args[0].numel() > 4:
            raise ForbiddenCall("this exercise asks for small tensors only")
        yield

    with pytest.raises(AssertionError) as err:
        check(
            _softmax_by_hand,
            _softmax_cases(),
            reference=_softmax_by_hand,
            guard=no_big_tensors,
            quiet=True,
        )
    assert len(seen) == 3 and "raised ForbiddenCall: this exercise asks for small" in str(err.value)


def test_switched_off_refuses_a_name_it_cannot_find():
    with (
        pytest.raises(ValueError, match=r"cannot find 'torch\.no_such_function'"),
        switched_off(("torch.no_such_function",), RULE),
    ):
        pass
    with (
        pytest.raises(ValueError, match=r"cannot find 'torch\.ops\.aten\.no_such_op'"),
        switched_off(("torch.ops.aten.no_such_op",), RULE),
    ):
        pass


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda x: torch.ops.aten._softmax(x, 0, False), "torch.ops.aten._softmax"),
        (lambda x: torch.ops.aten._softmax.default(x, 0, False), "torch.ops.aten._softmax"),
        (lambda x: torch._softmax(x, 0, False), "torch._softmax"),
        (lambda x: torch.ops.aten._log_softmax(x, 0, False), "torch.ops.aten._log_softmax"),
        (lambda x: torch.special.softmax(x, 0), "torch._C._special.special_softmax"),
    ],
)
def test_an_operator_is_refused_by_name_however_it_is_called(call, name):
    x = torch.randn(4, dtype=torch.float64)
    with (
        switched_off(("torch.ops.aten.*softmax*",), RULE),
        pytest.raises(ForbiddenCall, match=f"{RULE}: {re.escape(name)} is switched off"),
    ):
        call(x)
    assert torch.allclose(call(x), torch.softmax(x, 0)) or name.endswith("_log_softmax")


def test_an_operator_refused_by_name_still_runs_inside_an_allowed_function():
    """torch.softmax runs aten._softmax inside: only the student's own calls are refused."""
    x = torch.randn(4, dtype=torch.float64)
    with switched_off(("torch.ops.aten._softmax",), RULE):
        assert torch.allclose(torch.softmax(x, 0), _softmax_by_hand(x))


def _requires_grad_by(way):
    x = torch.randn(3, dtype=torch.float64)
    if way == "factory":
        return torch.tensor([1.0, 2.0], requires_grad=True)
    if way == "method":
        return x.requires_grad_()
    if way == "setter":
        x.requires_grad = True
        return x
    return torch.nn.Parameter(x) * 2  # a Parameter is refused at its first use


@pytest.mark.parametrize(
    ("way", "name"),
    [
        ("factory", "torch.tensor"),
        ("method", "torch.Tensor.requires_grad_"),
        ("setter", "setting torch.Tensor.requires_grad"),
        ("parameter", "torch.Tensor.mul"),
    ],
)
def test_with_autograd_off_no_tensor_may_require_grad(way, name):
    with (
        switched_off((), RULE, autograd_off=True),
        pytest.raises(AutogradForbidden, match=f"{RULE}: autograd is switched off .* {name} made"),
    ):
        _requires_grad_by(way)
    assert _requires_grad_by(way).requires_grad  # and may again afterwards


def test_with_autograd_off_torch_without_a_graph_works():
    x = torch.randn(3, 4, dtype=torch.float64)
    with switched_off((), RULE, autograd_off=True), torch.enable_grad():
        y = (x @ x.T).softmax(-1).sum_to_size(1, 3)
    assert y.shape == (1, 3) and not y.requires_grad


def _autograd_state():
    from torch.autograd.variable import Variable

    return Variable.__dict__["_execution_engine"], torch._C._len_torch_function_stack()


def test_autograd_is_back_after_an_exception_and_after_a_timeout():
    before = _autograd_state()
    with (
        pytest.raises(KeyError),
        switched_off(("torch.ops.aten.*_backward*",), RULE, autograd_off=True),
    ):
        raise KeyError("the student's code failed")
    assert _autograd_state() == before

    def forever(x):
        while True:
            time.sleep(0.01)

    with pytest.raises(AssertionError, match=r"still running after 0\.2 s"):
        check(
            forever,
            _softmax_cases()[:1],
            reference=_softmax_by_hand,
            timeout_s=0.2,
            quiet=True,
            forbidden=("torch.autograd.grad", "torch.ops.aten.*_backward*"),
            rule=RULE,
            autograd_off=True,
        )
    assert _autograd_state() == before
    x = torch.ones(2, requires_grad=True)
    (3 * x).sum().backward()
    assert torch.equal(x.grad, torch.full((2,), 3.0))


# ----------------------------------------------------------------------------- make_student


def _instructor_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import numpy as np"),
        nbformat.v4.new_code_cell(
            "def f(x):\n"
            '    """Docstring stays."""\n'
            "    ### BEGIN SOLUTION\n"
            "    secret_intermediate = np.tanh(x)\n"
            "    return secret_intermediate * 3\n"
            "    ### END SOLUTION",
            outputs=[nbformat.v4.new_output("stream", text="old output")],
            execution_count=4,
        ),
        nbformat.v4.new_code_cell(
            "assert f(0) == 0\n### BEGIN HIDDEN TESTS\nassert f(1) == 3 * np.tanh(1)\n"
            "### END HIDDEN TESTS"
        ),
        nbformat.v4.new_markdown_cell(
            "Explain why.\n\n### BEGIN SOLUTION\nBecause the derivative vanishes there.\n"
            "### END SOLUTION"
        ),
        nbformat.v4.new_markdown_cell(
            "Grading:\n=== BEGIN MARK SCHEME ===\nGive two points for mentioning saturation.\n"
            "=== END MARK SCHEME ===\nEnd."
        ),
        nbformat.v4.new_markdown_cell(
            "A worked answer with saturation explained at length.", metadata={"tags": ["solution"]}
        ),
    ]
    return nb


def test_student_notebook_replaces_every_kind_of_solution():
    nb = _instructor_notebook()
    student = ms.student_notebook(nb)
    code = student.cells[1].source
    assert code == (
        'def f(x):\n    """Docstring stays."""\n    # YOUR CODE HERE\n'
        "    raise NotImplementedError()"
    )
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert student.cells[2].source == "assert f(0) == 0"
    assert student.cells[3].source == "Explain why.\n\nYOUR ANSWER HERE"
    assert student.cells[4].source == "Grading:\nEnd."
    assert len(student.cells) == 5  # the tagged worked answer is gone
    text = "\n".join(c.source for c in student.cells)
    for line in ms.solution_lines(nb, min_length=1):
        assert line not in text
    assert not any(m in text for m in ms.MARKERS)
    assert nb.cells[1].outputs  # the instructor notebook itself is untouched


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "without a matching"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ],
)
def test_unbalanced_markers_are_errors(source, message):
    with pytest.raises(ValueError, match=message):
        ms.student_source(source, "code")


def test_make_student_cli_mirrors_the_folder_and_skips_notebooks_without_solutions(tmp_path):
    src = tmp_path / "src"
    (src / "ch1").mkdir(parents=True)
    nbformat.write(_instructor_notebook(), src / "ch1" / "exercises.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), src / "ch1" / "plain.ipynb")
    assert ms.main([str(src), str(tmp_path / "out")]) == 0
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.ipynb"))
    assert [str(p) for p in written] == ["ch1/exercises.ipynb"]
    student = nbformat.read(tmp_path / "out" / "ch1" / "exercises.ipynb", as_version=4)
    assert "secret_intermediate" not in nbformat.writes(student)
    assert ms.main([str(src), str(src)]) == 2  # refuses to overwrite the instructor notebooks


def _annotated_roles(nb: nbformat.NotebookNode) -> list[tuple]:
    """(grade, solution, locked, task, points) of each cell, as annotated."""
    return [
        tuple(
            c.metadata["nbgrader"].get(k) for k in ("grade", "solution", "locked", "task", "points")
        )
        for c in nb.cells
    ]


def test_annotate_gives_every_cell_its_nbgrader_role():
    from nbgrader.nbgraderformat import MetadataValidator

    nb = _instructor_notebook()
    nb.cells += [
        nbformat.v4.new_code_cell("check_f(f)\ncheck_g(f);"),  # two checker calls: 2 points
        nbformat.v4.new_code_cell("check_f(lambda x: x)"),  # not the student's function: read-only
        nbformat.v4.new_code_cell("print(f(1))", metadata={"dlbook": {"points": 3}}),
    ]
    assert ms.annotate_nbgrader(nb, prefix="ex") == 3  # code and markdown solution, worked answer
    assert _annotated_roles(nb) == [
        (False, False, True, False, None),  # read-only
        (False, True, False, False, None),  # solution
        (True, False, True, False, 1),  # hidden tests: autograded, 1 point
        (True, True, False, False, 1),  # markdown solution: written answer
        (False, False, True, True, 1),  # mark scheme: task
        (True, True, False, False, 1),  # tagged worked answer: written answer, text replaced
        (True, False, True, False, 2),
        (False, False, True, False, None),
        (True, False, True, False, 3),
    ]
    MetadataValidator().validate_nb(nb)  # nbgrader's own schema check
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells]
    assert len(set(ids)) == len(ids) and all(i.startswith("ex-") for i in ids)
    before = nbformat.writes(nb)
    ms.annotate_nbgrader(nb, prefix="other")  # again: nothing changes, grade_ids are kept
    assert nbformat.writes(nb) == before


def test_annotate_replaces_a_copied_grade_id_and_validates_its_inputs():
    nb = _instructor_notebook()
    ms.annotate_nbgrader(nb, prefix="ex")
    nb.cells.append(
        nbformat.v4.new_code_cell("x = 1", metadata=copy.deepcopy(nb.cells[0].metadata))
    )
    ms.annotate_nbgrader(nb, prefix="ex")
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells]
    assert len(set(ids)) == len(ids) and ids[0] == f"ex-{nb.cells[0].id}"
    with pytest.raises(ValueError, match="expected a prefix"):
        ms.annotate_nbgrader(nb, prefix="two words")
    with pytest.raises(ValueError, match="expected an nbformat notebook"):
        ms.annotate_nbgrader({"cells": []})
    nb.cells[0].metadata["dlbook"] = {"points": -1}
    with pytest.raises(ValueError, match=r"dlbook\.points must be an integer >= 0, got -1"):
        ms.annotate_nbgrader(nb)
    del nb.cells[0].metadata["dlbook"]
    nb.cells[1].metadata["dlbook"] = {"points": 2}  # on the student's code: it cannot score
    with pytest.raises(ValueError, match="got it on a solution code cell"):
        ms.annotate_nbgrader(nb)
    tagged = nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")
    tagged.metadata["tags"] = ["solution"]
    nb.cells[0] = tagged
    with pytest.raises(ValueError, match="got both"):
        ms.annotate_nbgrader(nb)


def test_annotate_cli_works_in_place_and_only_on_notebooks_with_solutions(tmp_path, capsys):
    nbformat.write(_instructor_notebook(), tmp_path / "exercises.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "plain.ipynb")
    plain = (tmp_path / "plain.ipynb").read_text()
    assert ms.main(["--annotate", str(tmp_path)]) == 0
    assert "1 autograded test cell(s) worth 1 point(s)" in capsys.readouterr().out
    nb = nbformat.read(tmp_path / "exercises.ipynb", as_version=4)
    assert all(c.metadata["nbgrader"]["grade_id"].startswith("exercises-") for c in nb.cells)
    assert (tmp_path / "plain.ipynb").read_text() == plain
    assert ms.main(["--annotate", str(tmp_path / "missing")]) == 2
