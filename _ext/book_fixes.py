"""Local Sphinx fixes for the book's build.

Sphinx 7.4 keeps a script added with ``app.add_js_file(None, body=...)`` twice when the HTML
builder re-reads its registry: once with ``filename=None``, once with ``filename=''``. The two
compare unequal, so every page declares inline scripts such as sphinx-thebe's
``const THEBE_JS_URL`` twice, and the second declaration is a JavaScript error on load. This
extension drops the second copy of any inline script (same body, same priority, same attributes)
before each page is written. tests/test_book.py checks the result.

It also lets the tests read Sphinx's warnings where Sphinx writes them: when the environment
variable ``DLBOOK_SPHINX_WARNINGS`` names a file, everything Sphinx writes to its warning stream
(after its own filters: what ``-W`` turns into a failed build) is written to that file too. The
build's other output, such as a Jupyter kernel's log lines as it shuts down, never reaches it.

And it tells the notebooks that they are executed for the HTML book: ``DLBOOK_FRAMES=1`` (unless
the environment sets it already), which the kernels the build starts inherit, so each interactive
figure also draws its frames for the page's own controls (see ``dlbook.frames``).
"""

from __future__ import annotations

import logging
import os
from typing import Any, TextIO


def _key(js: Any) -> tuple:
    return (js.filename or "", js.priority, tuple(sorted(js.attributes.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for js in scripts:
        key = _key(js)
        if key in seen:
            continue
        seen.add(key)
        unique.append(js)
    scripts[:] = unique


class _Tee:
    """A stream that writes to Sphinx's own warning stream and to a file."""

    def __init__(self, stream: Any, copy: TextIO) -> None:
        self.stream, self.copy = stream, copy

    def write(self, data: str) -> None:
        self.stream.write(data)
        self.copy.write(data)
        self.copy.flush()

    def flush(self) -> None:
        if hasattr(self.stream, "flush"):
            self.stream.flush()
        self.copy.flush()


def copy_warnings_to(path: str) -> None:
    """Tee Sphinx's warning stream (its ``WarningStreamHandler``) into the file ``path``."""
    from sphinx.util.logging import NAMESPACE, WarningStreamHandler

    handlers = [
        h for h in logging.getLogger(NAMESPACE).handlers if isinstance(h, WarningStreamHandler)
    ]
    if len(handlers) != 1:
        raise RuntimeError(f"expected Sphinx's one warning handler, found {len(handlers)}")
    copy = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole build
    handlers[0].setStream(_Tee(handlers[0].stream, copy))


def setup(app):
    os.environ.setdefault("DLBOOK_FRAMES", "1")  # dlbook.frames.FRAMES_ENV
    app.connect("html-page-context", dedupe_scripts, priority=900)
    if os.environ.get("DLBOOK_SPHINX_WARNINGS"):
        copy_warnings_to(os.environ["DLBOOK_SPHINX_WARNINGS"])
    return {"parallel_read_safe": True, "parallel_write_safe": True}
