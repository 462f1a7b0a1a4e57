"""The glossary (chapters/appendix/glossary.md): at least 60 terms, each with its Chinese term, a
one-line definition and a link to a page of the book that introduces it; every term it defines is
used in the book, and every term a chapter defines in bold is in it."""

from __future__ import annotations

import re

from conftest import ROOT, toc_entries

GLOSSARY = ROOT / "chapters" / "appendix" / "glossary.md"
CJK = re.compile(r"[\u4e00-\u9fff]")
ROW = re.compile(
    r"^\| (?P<en>[^|]+) \| (?P<zh>[^|]+) \| (?P<definition>[^|]+) \| (?P<link>[^|]+) \|$"
)


def rows() -> list[dict[str, str]]:
    found = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m and m["en"] != "English" and not m["en"].startswith("---"):
            found.append({k: v.strip() for k, v in m.groupdict().items()})
    return found


def test_glossary_is_in_the_table_of_contents():
    assert "chapters/appendix/glossary" in toc_entries()


def test_at_least_sixty_terms_each_with_chinese_and_a_definition():
    terms = rows()
    assert len(terms) >= 60, f"only {len(terms)} terms"
    for t in terms:
        assert CJK.search(t["zh"]), f"{t['en']}: no Chinese term ({t['zh']!r})"
        assert len(t["definition"].split()) >= 5, f"{t['en']}: definition too short"
    names = [t["en"].lower() for t in terms]
    assert len(set(names)) == len(names), "duplicate terms"
    assert names == sorted(names), "terms are not in alphabetical order"


def test_the_five_ideas_are_there():
    zh = {t["en"].lower(): t["zh"] for t in rows()}
    assert zh["backpropagation"] == "反向传播"
    assert zh["attention"] == "注意力机制"
    assert zh["generative adversarial network"] == "生成对抗网络"
    assert zh["reinforcement learning"] == "强化学习"
    assert "gpt" in zh


def test_every_term_links_to_a_page_in_the_book():
    pages = set(toc_entries())
    for t in rows():
        m = re.fullmatch(r"\{doc\}`\.\./(?P<target>[^`]+)`", t["link"])
        assert m, f"{t['en']}: expected a {{doc}} link, got {t['link']!r}"
        assert "chapters/" + m["target"] in pages, f"{t['en']}: {m['target']} is not in _toc.yml"


# --- The glossary and the book agree ---------------------------------------------------------
#
# "Used in the book" means: in the prose of a page of the book, that is a chapter's MyST markdown
# file (``chapters/*/*.md``, the glossary itself excluded) or a markdown cell of a notebook
# (``chapters/*/*.ipynb``), compared case-insensitively after `normalise` (hyphens as spaces,
# -ise as -ize, markup dropped), as a whole word or with a plural s/es; a term the pages write
# in another usual form (the glossary's "activation function", the pages' "activation") is listed
# in BOOK_WRITES.
#
# A "bold definition" is a ``**term**`` in the prose of a chapter page (``chapters/01-*``,
# ``chapters/02-*`` and on, md files and notebooks' markdown cells; code fences and inline code
# removed) that is not a run-in heading: bold text that ends in ``.``, ``:``, ``?`` or ``!``, or
# is followed at once by ``:`` (**Wrong:**, **Right:**, **Check it:**, **Why it is wrong.**,
# **The clip.**, **Cost**: ...), nor the book's "Check it" link label. The preface
# (``chapters/00-preface``) is about the book, not its subject, and is not a chapter page. Bold
# used for emphasis or for a phrase that is not a term is listed in NOT_TERMS with the reason;
# a bold term that the glossary holds under another name is listed in SAME_AS.

BOLD = re.compile(r"\*\*([^*\n]+?)\*\*(:?)")
FENCE = re.compile(r"^(```|~~~)(?!\{(?!code-cell)).*?^\1", re.S | re.M)  # code, not directives
INLINE_CODE = re.compile(r"`[^`\n]*`")

NOT_TERMS = {
    # emphasis of one word or number
    "2": "emphasis: the 2 of He initialisation's variance",
    "every": "emphasis",
    "no": "emphasis",
    "one": "emphasis",
    "two": "emphasis",
    "sum": "emphasis",
    "zero": "emphasis",
    "check": "emphasis in a list of what the chapter teaches",
    "peak memory": "one of the measured quantities of a notebook",
    "at most two": "emphasis of a result",
    "at most two modes": "emphasis of a result",
    "one head": "emphasis of an experiment's two arms",
    "two heads": "emphasis of an experiment's two arms",
    "optimal": "an adjective, defined with the optimal value function (Bellman optimality eq.)",
    "objective": "a generic word, defined for the policy-gradient setting where it is used",
    "elementwise": "a description of a building block, not a term",
    "row by row": "a description of a building block, not a term",
    "matrix product": "a description of attention's form, not a term",
    "store": "a step of an algorithm",
    "inputs": "an algorithm's field label",
    "output": "an algorithm's field label",
    # phrases that sum up a chapter's topics (its "What you will learn" list)
    "building block": "the book's word for its modules (chapter 1's list of topics)",
    "backward pass of a multi-layer perceptron": "a topic of chapter 1 (backpropagation)",
    "flops and memory": "a topic of chapter 1",
    "wrong update rules": "a topic of chapter 1's errata",
    "one head cannot do and two heads can": "a task of chapter 2, not a term",
    "reverse a sequence": "a task of chapter 2, not a term",
    "sampling": "a topic of chapter 3 (temperature, top-k and top-p sampling)",
    "training-style loss": "one of two losses measured in one notebook, defined there",
    "generation-style loss": "one of two losses measured in one notebook, defined there",
    "on a mixture of gaussians": "a run-in heading without a colon",
    "on images": "a run-in heading without a colon",
    "high quality": "an evaluation criterion of the GAN chapter (after Lin et al.), defined there",
    "captured": "an evaluation criterion of the GAN chapter (after Lin et al.), defined there",
    # names of the wrong versions a notebook reproduces
    "every rank reads the same shard": "a data-parallel bug the notebook reproduces",
    "forgetting the $1/k$": "a gradient-accumulation bug the notebook reproduces",
    "the mean of unequal micro-batches' means": "an accumulation bug the notebook reproduces",
}

SAME_AS = {
    "8-gaussian ring": "Gaussian mixture",
    "25-gaussian grid": "Gaussian mixture",
    "actions": "action",
    "actor": "actor-critic",
    "critic": "actor-critic",
    "autoregressive factorisation": "autoregressive model",
    "bellman backup": "Bellman equation",
    "bellman expectation equations": "Bellman equation",
    "bellman expectation operator": "Bellman equation",
    "bellman optimality operator": "Bellman optimality equation",
    "optimal value function": "Bellman optimality equation",
    "causal": "causal mask",
    "expected rewards": "reward",
    "greedy": "greedy decoding",
    "initial-state distribution": "Markov decision process",
    "transition probabilities": "Markov decision process",
    "layernorm": "layer normalisation",
    "learned": "position embedding",
    "sinusoidal": "sinusoidal position encoding",
    "policy-gradient methods": "policy gradient",
    "pre-layernorm transformer block": "pre-LayerNorm",
    "probability ratio": "importance ratio",
    "reverse kl": "KL divergence",
    "saturates": "saturation",
    "saturating": "saturation",
    "non-saturating": "non-saturating loss",
    "score": "log-derivative trick",
    "state-value function": "value function",
    "states": "state",
    "sup norm": "contraction mapping",
    "surrogate objective": "clipped surrogate objective",
    "temporal-difference residual": "temporal-difference error",
    "terminated": "episode",
    "terminates": "episode",
    "truncated": "episode",
    "top-$p$": "top-p sampling",
    "vanish or explode": "vanishing gradients",
    "value function": "value function",
    "value loss": "actor-critic",
    "xavier/glorot and he initialisations": "Xavier initialisation",
    "padding": "padding",
}


# Glossary terms the book writes in a shorter or another usual form: the glossary gives the full
# name, the pages write this.
BOOK_WRITES = {
    "activation function": "activation",
    "autoregressive model": "autoregressive",
    "batch normalisation": "BatchNorm",
    "broadcasting": "broadcast",
    "clipped surrogate objective": "clipped objective",
    "contraction mapping": "contraction",
    "Gaussian mixture": "mixture of Gaussians",
    "latent vector": "latent",
    "loss function": "loss",
    "reward over-optimisation": "over-optimisation",
    "top-k sampling": "top-k",
}


def normalise(text: str) -> str:
    """Lower case, markup and maths delimiters dropped, hyphens as spaces, -ise as -ize."""
    text = text.lower()
    text = re.sub(r"[$*`\\{}]", "", text)
    text = re.sub(r"[-_/]", " ", text)
    text = re.sub(r"is(e|es|ed|ing|ation|ations)\b", r"iz\1", text)
    return re.sub(r"\s+", " ", text).strip()


def term_forms(en: str) -> list[str]:
    """'direct preference optimisation (DPO)' -> ['direct preference optimisation', 'DPO']."""
    m = re.fullmatch(r"(?P<name>.+?) \((?P<abbr>[^)]+)\)", en)
    return [m["name"], m["abbr"]] if m else [en]


def book_pages(pattern: str = "*") -> dict[str, str]:
    """Prose of each page: md files and notebooks' markdown cells, code removed."""
    import json

    pages = {}
    for path in sorted((ROOT / "chapters").glob(f"{pattern}/*")):
        if path == GLOSSARY:
            continue
        if path.suffix == ".md":
            text = path.read_text(encoding="utf-8")
        elif path.suffix == ".ipynb":
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            text = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        else:
            continue
        text = INLINE_CODE.sub(" ", FENCE.sub(" ", text))
        pages[str(path.relative_to(ROOT))] = text
    return pages


def is_used(term: str, normalised_book: str) -> bool:
    forms = [normalise(f) for f in [*term_forms(term), *BOOK_WRITES.get(term, "").split("|")] if f]
    # also without short asides: "Xavier (Glorot) initialisation" uses "Xavier initialisation"
    book = normalised_book + "\n" + re.sub(r" ?\([^()]{1,30}\)", "", normalised_book)
    return any(re.search(rf"\b{re.escape(f)}(s|es)?\b", book) for f in forms)


def test_every_glossary_term_is_used_in_the_book():
    book = "\n".join(normalise(text) for text in book_pages().values())
    unused = [t["en"] for t in rows() if not is_used(t["en"], book)]
    assert not unused, f"glossary terms the book never uses: {unused}"


def test_book_writes_names_glossary_terms():
    terms = {t["en"] for t in rows()}
    assert not set(BOOK_WRITES) - terms, (
        f"BOOK_WRITES keys not in the glossary: {set(BOOK_WRITES) - terms}"
    )


def bold_definitions() -> dict[str, set[str]]:
    """Bold definitions of the chapter pages (see above), each with the pages it is on."""
    found: dict[str, set[str]] = {}
    for page, text in book_pages("0[1-9]-*").items():
        for m in BOLD.finditer(text):
            term = m[1].strip()
            if term[-1] in ".:?!" or m[2] == ":" or term.lower().startswith("check it"):
                continue
            found.setdefault(term, set()).add(page)
    return found


def test_every_bold_definition_is_in_the_glossary():
    glossary = {normalise(f): t["en"] for t in rows() for f in term_forms(t["en"])}
    not_terms = {normalise(k) for k in NOT_TERMS}
    same_as = {normalise(k): v for k, v in SAME_AS.items()}
    missing = {}
    for term, pages in bold_definitions().items():
        key = normalise(term)
        if key in not_terms:
            continue
        if key in same_as:
            assert normalise(same_as[key]) in glossary, f"SAME_AS[{term!r}] is not in the glossary"
            continue
        bare = normalise(re.sub(r"\s*\([^)]*\)", "", term))
        if bare in glossary or bare.rstrip("s") in glossary or bare + "s" in glossary:
            continue
        missing[term] = sorted(pages)
    assert not missing, f"bold-defined terms not in the glossary: {missing}"


def test_exception_lists_are_not_stale():
    """Every NOT_TERMS / SAME_AS entry is still a bold phrase of some chapter page."""
    bold = {normalise(t) for t in bold_definitions()}
    stale = sorted(k for k in [*NOT_TERMS, *SAME_AS] if normalise(k) not in bold)
    assert not stale, f"exceptions no chapter page bolds any more: {stale}"
