"""The book test reads Sphinx's warnings where Sphinx writes them, and nothing else.

A fresh-clone CI run once failed on a build that had succeeded: a Jupyter kernel shutting down
printed ``ERROR:tornado.general:Uncaught exception in ZMQStream callback`` into the build's log,
and the test treated every ``ERROR:`` line of the log as a failure. ``_ext/book_fixes.py`` now
copies Sphinx's own warning stream into a file (``DLBOOK_SPHINX_WARNINGS``); ``book_html`` fails
on what is in that file and on the exit status. Here a small Sphinx project shows both sides: the
same noise on stderr fails nothing, and a real warning is caught.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

NOISE = "ERROR:tornado.general:Uncaught exception in ZMQStream callback (a kernel shutting down)"


def _build(tmp_path: Path, index: str) -> tuple[subprocess.CompletedProcess, str]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / '_ext')!r})\n"
        "extensions = ['book_fixes']\n"
        f"sys.stderr.write({NOISE!r} + '\\n')  # what a kernel printed as it shut down\n"
    )
    (src / "index.rst").write_text(index)
    warnings = tmp_path / "warnings.txt"
    sphinx = Path(sys.executable).with_name("sphinx-build")
    out = tmp_path / "out"
    cmd = [str(sphinx), "-b", "html", "-W", "-n", "--keep-going", "-q", str(src), str(out)]
    env = {**os.environ, "DLBOOK_SPHINX_WARNINGS": str(warnings)}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert warnings.is_file(), f"the extension wrote no warnings file:\n{run.stderr}"
    return run, warnings.read_text()


def test_kernel_noise_on_stderr_does_not_fail_a_clean_build(tmp_path):
    run, warnings = _build(tmp_path, "Title\n=====\n\nA clean page.\n")
    assert NOISE in run.stderr  # the noise was printed where the old test read it ...
    assert run.returncode == 0 and warnings == ""  # ... and Sphinx itself warned of nothing


def test_a_sphinx_warning_is_in_the_file_and_fails_the_build(tmp_path):
    run, warnings = _build(tmp_path, "Title\n=====\n\nSee :ref:`no-such-label`.\n")
    assert run.returncode != 0
    assert "no-such-label" in warnings and "WARNING" in warnings, warnings
    assert NOISE not in warnings
