"""A tiny document builder that writes the same content as self-contained HTML and Markdown.

HTML embeds each figure as a base64 data URI and carries its own CSS, so a page opens offline
and makes no request to any host. Markdown refers to the same figures as PNG files beside it.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:2rem auto;max-width:1200px;padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{border-bottom:2px solid #333}h2{margin-top:2.2rem;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:0.8rem 0;font-size:0.92rem}
th,td{border:1px solid #ccc;padding:0.3rem 0.55rem;text-align:right}
th{background:#eef1f5}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:0.9rem;color:#444}.verdict{margin:0.2rem 0}
.sig{color:#0a5d00;font-weight:600}.nosig{color:#7a4b00}
.about td,.best td,.top td{text-align:left}nav a{margin-right:1rem}
code{background:#f3f3f3;padding:0 0.2rem}
"""


def fmt(v: object, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.{digits}f}"
    return str(v)


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


@dataclass
class Doc:
    title: str
    slug: str  # file stem, also the prefix of figure files
    html: list[str] = field(default_factory=list)
    md: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG

    def heading(self, text: str, level: int = 2, anchor: str | None = None) -> None:
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{c}>{html.escape(text)}</p>")
        self.md.append(f"{text}\n")

    def raw_html(self, snippet: str) -> None:
        """Trusted markup built here (links); never user text."""
        self.html.append(snippet)

    def bullets(self, items: Sequence[tuple[str, str | None]]) -> None:
        """Items with an optional CSS class each."""
        lis = "".join(f'<li class="verdict {c or ""}">{html.escape(t)}</li>' for t, c in items)
        self.html.append(f"<ul>{lis}</ul>")
        self.md.append("".join(f"- {t}\n" for t, _ in items))

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[object]], cls: str = ""
    ) -> None:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>"
            for row in rows
        )
        self.html.append(
            f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        )
        md_rows = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        md_rows += [
            "| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows
        ]
        self.md.append("\n".join(md_rows) + "\n")

    def figure(self, name: str, data: bytes | None, caption: str) -> None:
        if data is None:
            self.para(f"({caption}: not enough finished trials to draw this yet.)")
            return
        file = f"{self.slug}-{name}.png"
        self.figures[file] = data
        b64 = base64.b64encode(data).decode("ascii")
        self.html.append(
            f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
        self.md.append(f"![{caption}](figures/{file})\n")

    @contextmanager
    def html_only(self) -> Iterator[None]:
        """What is added inside goes on the HTML page (figures included) but not into its
        Markdown: a section that summary.md already holds from another page."""
        kept = len(self.md)
        try:
            yield
        finally:
            del self.md[kept:]

    def to_html(self) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(self.html)
            + "\n</body></html>\n"
        )

    def to_markdown(self) -> str:
        return "\n".join(self.md)
