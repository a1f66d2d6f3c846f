"""Research reports: studies in storage -> self-contained HTML pages and a Markdown summary.

``build(url, names, out)`` writes ``index.html`` (the studies compared), one ``<study>.html``
per study, ``summary.md`` and ``figures/*.png`` (for the Markdown). Files are written to temp
names and renamed into place, so an interrupted report never leaves half a page.

``load`` (studies -> ``StudyData``) -> ``analyses`` and ``tuned`` (tables and findings from
trials) -> ``plots`` (figures) -> ``cells`` (shared table cells), ``page_tuned``, ``pages``
(one page per study) and ``comparison`` (the studies side by side); ``doc`` renders a page to
HTML and Markdown. The statistics they use are ``fishopt.stats``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fishopt.config import StorageURL
from fishopt.errors import FishoptError
from fishopt.files import write_bytes
from fishopt.report.answers import answer
from fishopt.report.comparison import comparison_page
from fishopt.report.doc import Doc
from fishopt.report.load import load_studies
from fishopt.report.pages import study_page


@dataclass(frozen=True)
class Written:
    index: Path
    pages: list[Path]
    summary: Path
    findings: list[str]  # one line per study, as on the comparison page


def build(url: StorageURL, names: list[str], out: Path) -> Written:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FishoptError(f"--out {out} is a file; give a folder for the report")
    studies = load_studies(url, names)
    index = comparison_page(studies)
    pages: list[Doc] = [study_page(s, studies) for s in studies]
    # summary.md: the comparison page (with each tuned study's section), then each study page
    # (whose Markdown leaves out the tuned section the comparison already holds).
    summary = "\n".join([index.to_markdown(), *(page.to_markdown() for page in pages)])
    try:
        for doc in (index, *pages):
            for file, data in doc.figures.items():
                write_bytes(out / "figures" / file, data)
            write_bytes(out / f"{doc.slug}.html", doc.to_html().encode())
        write_bytes(out / "summary.md", summary.encode())
    except OSError as exc:
        raise FishoptError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return Written(
        out / "index.html",
        [out / f"{p.slug}.html" for p in pages],
        out / "summary.md",
        [f"{s.name}: {answer(s, studies)}" for s in studies],
    )
