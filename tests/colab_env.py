"""A virtual environment that holds Google Colab's preinstalled versions, for tests/test_colab.py.

Colab readers run every notebook's first cell, which installs the book's package next to what
Colab already has (``%pip install "dlbook @ git+...#subdirectory=code"``). That install must
replace none of Colab's packages: Colab's own ``google-colab`` requires ``ipython==7.34.0``, and
a newer IPython, traitlets or ipywidgets breaks the runtime. ``../shared/colab/colab-runtime.txt``
(beside the checkout; CI has it there too) lists Colab's versions as ``name==version`` lines.

    python tests/colab_env.py DIR     build such an environment in DIR/venv and check ./code

What stands in for what (this machine and CI have Python 3.11, and reach only PyPI):

* Python 3.11 for Colab's 3.13 (``requires-python`` is checked against 3.13 on its own).
* torch 2.13.0, the CPU build on this machine's disk, for Colab's CUDA build of torch 2.11: any
  other torch would be a multi-GB download. ``code/pyproject.toml``'s torch bound is checked
  against 2.11 without installing it (tests/test_colab.py).
* Every other pin installs at Colab's exact version on Python 3.11, except those in
  :data:`LEFT_OUT`, each with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CODE = ROOT / "code"
RUNTIME_FILE = ROOT.parent / "shared" / "colab" / "colab-runtime.txt"

TORCH_STAND_IN = "2.13.0"  # the CPU build on this machine's disk (pip's find-links)
LEFT_OUT = {
    "torch": f"Colab's CUDA build; the CPU build of torch {TORCH_STAND_IN} stands in",
    "torchvision": "no dependency of dlbook; its builds go with one torch (0.26 with torch 2.11)",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*(?:#.*)?$")


def read_pins(text: str) -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line; comments and blanks skipped.

    Raises:
        ValueError: on a line that is neither a comment nor a pin (so no pin is lost unread).
    """
    pins: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        if m is None:
            raise ValueError(f"line {n} is not 'name==version': {raw!r}")
        pins[canonicalize_name(m[1])] = m[2]
    return pins


def colab_python(text: str) -> str | None:
    """Colab's Python version, from the file's header comment (``Python 3.13.15``), if given."""
    m = re.search(r"\bPython (\d+\.\d+(?:\.\d+)?)", text)
    return m[1] if m else None


def same_version(a: str, b: str) -> bool:
    """Whether two versions are the same release, local labels aside (``2.13.0+cpu``)."""
    return Version(Version(a).public) == Version(Version(b).public)


@dataclass
class Env:
    """A virtual environment holding Colab's versions.

    Attributes:
        python: the environment's interpreter.
        pins: what Colab has, less :data:`LEFT_OUT`, plus torch's stand-in: what was installed.
        constraints: a constraints file of ``pins``: installing with it replaces none of them.
        seconds: how long building it took.
    """

    python: Path
    pins: dict[str, str]
    constraints: Path
    seconds: float

    def pip(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        """Run ``python -m pip ARGS`` in the environment; raise with pip's output if it fails."""
        cmd = [str(self.python), "-m", "pip", *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed (exit {r.returncode}):\n{_pip_log(r.stdout + r.stderr)}"
            )
        return r

    def installed(self) -> dict[str, str]:
        """``{canonical name: version}`` of every distribution installed in the environment."""
        r = self.pip("list", "--format=json", "--disable-pip-version-check")
        return {canonicalize_name(d["name"]): d["version"] for d in json.loads(r.stdout)}

    def changed_pins(self) -> list[str]:
        """The pins that are not installed at their version, as ``name: want X, have Y``."""
        have = self.installed()
        return [
            f"{name}: want {want}, have {have.get(name, 'nothing')}"
            for name, want in sorted(self.pins.items())
            if name not in have or not same_version(have[name], want)
        ]


def _pip_log(text: str) -> str:
    """pip's output without the lines about index folders this machine does not have."""
    lines = [line for line in text.splitlines() if "is ignored: it is neither" not in line]
    return "\n".join(lines[-60:])


def python311() -> str | None:
    """A Python 3.11 interpreter (the one the torch stand-in on disk is built for), or None."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    return shutil.which("python3.11")


def build(folder: Path, runtime_text: str, python: str) -> Env:
    """Create ``folder/venv`` with ``python`` (3.11) and install Colab's pins into it.

    Raises:
        RuntimeError: if a pin cannot be installed, or is not there at its version afterwards.
    """
    start = time.perf_counter()
    pins = {n: v for n, v in read_pins(runtime_text).items() if n not in LEFT_OUT}
    pins["torch"] = TORCH_STAND_IN
    folder.mkdir(parents=True, exist_ok=True)
    constraints = folder / "colab-constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    venv = folder / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    env = Env(venv / "bin" / "python", pins, constraints, 0.0)
    # --no-compile: bytecode is written on first import instead, for what is imported.
    env.pip("install", "--quiet", "--no-compile", "-r", str(constraints))
    wrong = env.changed_pins()
    if wrong:
        raise RuntimeError("the environment does not hold Colab's versions: " + "; ".join(wrong))
    env.seconds = time.perf_counter() - start
    return env


@dataclass
class Resolution:
    """What ``pip install ./code`` would do in the environment.

    Attributes:
        install: ``{canonical name: version}`` that pip would install.
        replaced: ``name installed -> new`` for each of those already installed.
    """

    install: dict[str, str]
    replaced: list[str]


def resolve(env: Env, project: Path, report: Path) -> Resolution:
    """``pip install --dry-run --report`` of ``project`` in ``env``: what Colab's pip would do.

    No constraints: this is the notebooks' own ``%pip install``, with pip's own resolver.
    """
    env.pip("install", "--dry-run", "--quiet", "--report", str(report), str(project))
    items = json.loads(report.read_text())["install"]
    install = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in items}
    have = env.installed()
    replaced = [f"{n} {have[n]} -> {v}" for n, v in sorted(install.items()) if n in have]
    return Resolution(install, replaced)


def main(argv: list[str] | None = None) -> int:
    """Build the environment in a folder and say what installing ./code would do there."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__)
        return 2
    folder = Path(args[0])
    python = python311()
    if python is None:
        print("needs Python 3.11 (python3.11), for the CPU build of torch on disk")
        return 2
    env = build(folder, RUNTIME_FILE.read_text(), python)
    print(f"built {env.python} in {env.seconds:.0f} s")
    res = resolve(env, CODE, folder / "report.json")
    print("would install:", ", ".join(f"{n} {v}" for n, v in res.install.items()))
    print("would replace:", ", ".join(res.replaced) or "nothing")
    return 1 if res.replaced else 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main())
