"""Parts of the book that the build makes from the book's own sources.

- **Student notebooks.** When the build starts, every exercise notebook under ``chapters/`` (one
  with ``### BEGIN SOLUTION`` markers) is turned into its student version with
  ``dlbook.exercises.make_student`` and written beside the HTML output, in ``_build/student/``,
  together with a zip of all of them. Each exercise page gets a download link to its own student
  notebook at the top, and the directive ``{student-notebooks}`` lists them all.
- **How this book checks itself.** The directive ``{checks-table}`` scans the derivation pages for
  ``**Check it:**`` paragraphs and makes a table: chapter, result, and a link to each notebook
  cell (label ``check-...``) that verifies it.
- **Errata.** The directive ``{errata-list}`` collects every ``Errata:`` admonition of the
  derivation pages and shows it again, with a link back to its chapter.

The scanning functions are plain Python so that the tests use the same code
(``tests/test_checks.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

CHECK_LINE = re.compile(r"\*\*Check it[.:]?\*\*")
CHECK_REF = re.compile(r"\{ref\}`(?:[^`<]*<)?(check-[A-Za-z0-9_-]+)>?`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
FENCE_OPEN = re.compile(r"^(?P<fence>:{3,}|`{3,})\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*?)\s*$")
LABEL_DEF = re.compile(r"^\((?P<label>[A-Za-z0-9_-]+)\)=\s*$", re.M)
MAIN_RESULTS = ("prf:theorem", "prf:proposition", "prf:lemma", "prf:corollary")


@dataclass
class Check:
    page: str  # docname, e.g. chapters/01-backprop/index
    result: str  # the result it verifies: a theorem's title or the section heading
    label: str  # the notebook label, e.g. check-backprop-linear


@dataclass
class Block:
    page: str
    kind: str  # e.g. prf:theorem, admonition
    title: str
    start: int  # 0-based line of the opening fence
    end: int  # 0-based line of the closing fence
    text: str  # the whole block, fences included


def derivation_pages(srcdir: Path) -> list[Path]:
    """The MyST Markdown pages under ``chapters/`` (the appendix excluded)."""
    return sorted(
        p for p in (Path(srcdir) / "chapters").glob("*/*.md") if p.parent.name != "appendix"
    )


def _docname(srcdir: Path, path: Path) -> str:
    return path.relative_to(srcdir).with_suffix("").as_posix()


def _strip_code(lines: list[str]) -> list[str]:
    """Blank out code blocks (```python ... ```), keeping directive fences (```{name} ... ```)."""
    out: list[str] = []
    code: str | None = None  # the fence of the open code block
    directives: list[str] = []  # the fences of the open directives
    for line in lines:
        s = line.strip()
        if code is not None:
            out.append("")
            if s and s == code[0] * len(s) and len(s) >= len(code):
                code = None
            continue
        m = re.match(r"^(`{3,}|~{3,}|:{3,})(.*)$", s)
        if m:
            fence, rest = m.group(1), m.group(2).strip()
            if rest.startswith("{"):
                directives.append(fence)
            elif (
                not rest
                and directives
                and fence[0] == directives[-1][0]
                and len(fence) >= len(directives[-1])
            ):
                directives.pop()
            elif fence[0] in "`~":
                code = fence
                out.append("")
                continue
        out.append(line)
    return out


def blocks(srcdir: Path, path: Path) -> list[Block]:
    """Every directive block (``:::{name} arg`` or a backtick fence) of a page, nested too."""
    lines = _strip_code(path.read_text(encoding="utf-8").split("\n"))
    found: list[Block] = []
    stack: list[tuple[str, str, str, int]] = []
    for i, line in enumerate(lines):
        s = line.strip()
        m = FENCE_OPEN.match(s)
        if m:
            stack.append((m.group("fence"), m.group("name"), m.group("arg"), i))
            continue
        if stack and s and s == stack[-1][0][0] * len(s) and len(s) >= len(stack[-1][0]):
            _fence, name, arg, start = stack.pop()
            text = "\n".join(path.read_text(encoding="utf-8").split("\n")[start : i + 1])
            found.append(Block(_docname(srcdir, path), name, arg, start, i, text))
    return sorted(found, key=lambda b: b.start)


def find_checks(srcdir: str | Path) -> list[Check]:
    """Every ``**Check it:**`` reference of the derivation pages, with the result it checks."""
    srcdir = Path(srcdir)
    checks: list[Check] = []
    for path in derivation_pages(srcdir):
        lines = _strip_code(path.read_text(encoding="utf-8").split("\n"))
        results = [b for b in blocks(srcdir, path) if b.kind in MAIN_RESULTS]
        heading = ""
        i = 0
        while i < len(lines):
            m = HEADING.match(lines[i])
            if m:
                heading = m.group(2)
            if CHECK_LINE.search(lines[i]):
                para = []
                j = i
                while j < len(lines) and lines[j].strip():
                    para.append(lines[j])
                    j += 1
                # the result: the main-result block this paragraph follows, else the section
                before = [b for b in results if b.start < i]
                result = heading
                if before and not any(HEADING.match(x) for x in lines[before[-1].end : i]):
                    b = before[-1]
                    kind = b.kind.split(":")[1].capitalize()
                    result = f"{kind}: {b.title}" if b.title else kind
                for label in CHECK_REF.findall(" ".join(para)):
                    checks.append(Check(_docname(srcdir, path), result, label))
                i = j
                continue
            i += 1
    return checks


def main_results_without_check(srcdir: str | Path) -> list[Block]:
    """Theorems, propositions, lemmas and corollaries with no ``**Check it:**`` after them
    (inside the block, or before the next heading or the next main result)."""
    srcdir = Path(srcdir)
    missing = []
    for path in derivation_pages(srcdir):
        lines = _strip_code(path.read_text(encoding="utf-8").split("\n"))
        results = [b for b in blocks(srcdir, path) if b.kind in MAIN_RESULTS]
        for k, b in enumerate(results):
            stop = len(lines)
            if k + 1 < len(results):
                stop = min(stop, results[k + 1].start)
            for j in range(b.end + 1, len(lines)):
                if HEADING.match(lines[j]):
                    stop = min(stop, j)
                    break
            span = lines[b.start : stop]
            if not any(CHECK_LINE.search(x) and CHECK_REF.search(x) for x in _paragraphs(span)):
                missing.append(b)
    return missing


def _paragraphs(lines: list[str]) -> list[str]:
    paras, cur = [], []
    for line in [*lines, ""]:
        if line.strip():
            cur.append(line)
        elif cur:
            paras.append(" ".join(cur))
            cur = []
    return paras


def find_errata(srcdir: str | Path) -> list[Block]:
    """Every ``Errata:`` admonition of the derivation pages (the preface's included)."""
    srcdir = Path(srcdir)
    return [
        b
        for path in derivation_pages(srcdir)
        for b in blocks(srcdir, path)
        if b.kind == "admonition" and b.title.lower().startswith("errata")
    ]


def notebook_labels(srcdir: str | Path) -> dict[str, str]:
    """``label -> docname`` for every ``(label)=`` target in the notebooks under ``chapters/``."""
    import nbformat

    from dlbook.nbtools import notebooks

    labels = {}
    for nb_path in notebooks(Path(srcdir) / "chapters"):
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                for m in LABEL_DEF.finditer(cell.source):
                    labels[m.group("label")] = _docname(Path(srcdir), nb_path)
    return labels


# ----------------------------------------------------------------------------- student notebooks


def student_name(docname: str) -> str:
    """``chapters/01-backprop/exercises`` -> ``01-backprop-exercises-student.ipynb``."""
    parts = Path(docname).parts[1:] if docname.startswith("chapters/") else Path(docname).parts
    return "-".join(parts) + "-student.ipynb"


def write_student_notebooks(srcdir: str | Path, outdir: str | Path) -> dict[str, Path]:
    """Write the student version of every exercise notebook; return ``docname -> path``."""
    import nbformat

    from dlbook.exercises.make_student import has_solutions, student_notebook
    from dlbook.nbtools import notebooks

    srcdir, outdir = Path(srcdir), Path(outdir)
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    written: dict[str, Path] = {}
    for nb_path in notebooks(srcdir / "chapters"):
        rel = nb_path.relative_to(srcdir)
        nb = nbformat.read(nb_path, as_version=4)
        if not has_solutions(nb):
            continue
        docname = rel.with_suffix("").as_posix()
        student = student_notebook(nb, name=str(rel))
        student.cells.insert(
            0,
            nbformat.v4.new_markdown_cell(
                f"*Student version of `{rel.as_posix()}` from* From Backprop to GPT. *Replace each "
                "`raise NotImplementedError()` with your code and run the checker cell after it.*"
            ),
        )
        target = outdir / student_name(docname)
        nbformat.write(student, target)
        written[docname] = target
    with zipfile.ZipFile(outdir / "student-notebooks.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for target in written.values():
            zf.write(target, target.name)
    return written


# ----------------------------------------------------------------------------- Sphinx


def setup(app):
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx import addnodes
    from sphinx.util.docutils import SphinxDirective

    def student_dir() -> Path:
        return Path(app.outdir).parent / "student"

    def on_builder_inited(app_):
        app_.env.dlbook_students = write_student_notebooks(app_.srcdir, student_dir())

    def download(docname: str, target: Path, text: str) -> nodes.Node:
        docdir = Path(app.srcdir) / Path(docname).parent
        ref = addnodes.download_reference(
            "", "", reftarget=os.path.relpath(target, docdir), refdoc=docname, refexplicit=True
        )
        ref += nodes.literal(text, text)
        return ref

    def on_doctree_read(app_, doctree):
        docname = app_.env.docname
        target = getattr(app_.env, "dlbook_students", {}).get(docname)
        if target is None:
            return
        para = nodes.paragraph()
        para += nodes.strong("Student version: ", "Student version: ")
        para += download(docname, target, target.name)
        para += nodes.Text(
            " (the solutions replaced by stubs; see Teaching with this book). All chapters: "
        )
        para += download(docname, student_dir() / "student-notebooks.zip", "student-notebooks.zip")
        para += nodes.Text(".")
        note = nodes.note()
        note += para
        section = next(iter(doctree.findall(nodes.section)), None)
        if section is not None:
            title = next(iter(section.findall(nodes.title)), None)
            section.insert(section.index(title) + 1 if title is not None else 0, note)

    class StudentNotebooks(SphinxDirective):
        """A bullet list of download links to every student notebook and to the zip."""

        def run(self):
            students = {
                d: t
                for d, t in getattr(self.env, "dlbook_students", {}).items()
                if d in self.env.found_docs
            }
            items = nodes.bullet_list()
            for docname, target in sorted(students.items()):
                para = nodes.paragraph()
                para += download(self.env.docname, target, target.name)
                para += nodes.Text(" — the student version of ")
                xref = addnodes.pending_xref(
                    "",
                    refdomain="std",
                    reftype="doc",
                    reftarget="/" + docname,
                    refexplicit=False,
                    refwarn=True,
                )
                xref += nodes.inline(docname, docname)
                para += xref
                items += nodes.list_item("", para)
            para = nodes.paragraph()
            para += nodes.Text("All of them in one file: ")
            para += download(
                self.env.docname, student_dir() / "student-notebooks.zip", "student-notebooks.zip"
            )
            return [items, para]

    class ChecksTable(SphinxDirective):
        """A table of every main result and the notebook cell that checks it."""

        def run(self):
            for p in derivation_pages(Path(self.env.srcdir)):
                self.env.note_dependency(str(p))
            rows = ["| Chapter | Result | Checked in |", "|---|---|---|"]
            for c in find_checks(self.env.srcdir):
                if c.page not in self.env.found_docs:
                    continue  # a partial build (another toc): only the pages it holds
                result = c.result.replace("|", "\\|")
                rows.append(f"| {{doc}}`/{c.page}` | {result} | {{ref}}`{c.label}` |")
            container = nodes.container(classes=["dlbook-checks"])
            self.state.nested_parse(StringList(rows, source="checks-table"), 0, container)
            return [container]

    class ErrataList(SphinxDirective):
        """Every errata box of the chapters, shown again with a link to its chapter."""

        def run(self):
            out = nodes.container(classes=["dlbook-errata"])
            srcdir = Path(self.env.srcdir)
            for p in derivation_pages(srcdir):
                self.env.note_dependency(str(p))
            for b in find_errata(srcdir):
                if b.page not in self.env.found_docs:
                    continue
                lines = b.text.split("\n")
                body = [ln for ln in lines[1:] if not re.match(r"^:(name|label):", ln.strip())]
                body = [re.sub(r"^(\$\$)\s*\([\w-]+\)\s*$", r"\1", ln) for ln in body]
                chapter_dir = Path(b.page).parent.as_posix()
                body = [
                    re.sub(r"\]\((?![a-z]+://|#|/)([^)]+)\)", rf"](/{chapter_dir}/\1)", ln)
                    for ln in body
                ]
                opts = [ln for ln in body if re.match(r"^:\w+:", ln.strip())]
                rest = body[len(opts) :]
                text = [lines[0], *opts, "", f"*From {{doc}}`/{b.page}`.*", *rest]
                self.state.nested_parse(StringList(text, source=b.page), 0, out)
            return [out]

    app.connect("builder-inited", on_builder_inited)
    app.connect("doctree-read", on_doctree_read, priority=400)  # before the download collector
    app.add_directive("student-notebooks", StudentNotebooks)
    app.add_directive("checks-table", ChecksTable)
    app.add_directive("errata-list", ErrataList)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
