"""Local Sphinx fixes for the book's build.

Sphinx 7.4 keeps a script added with ``app.add_js_file(None, body=...)`` twice when the HTML
builder re-reads its registry: once with ``filename=None``, once with ``filename=''``. The two
compare unequal, so every page declares inline scripts such as sphinx-thebe's
``const THEBE_JS_URL`` twice, and the second declaration is a JavaScript error on load. This
extension drops the second copy of any inline script (same body, same priority, same attributes)
before each page is written. tests/test_book.py checks the result.
"""

from __future__ import annotations

from typing import Any


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


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
