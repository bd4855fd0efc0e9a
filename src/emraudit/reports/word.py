"""Word documents (DOCX) with python-docx: what the health commission and a user's
department receive, to read, print, stamp and file.

A document built here has Chinese fonts named for Chinese text (python-docx sets only the
Latin font of a run; Word takes East Asian text from a separate `w:eastAsia` attribute,
so without it Chinese falls back to whatever the reader's Word picks): 宋体 for the body and
黑体 for headings, as official documents use. Tables get a header row and a grid; figures
are PNG images with a caption. Every value is written as text: nothing is a field or a
formula.
"""

from __future__ import annotations

import io
from typing import Sequence

from docx import Document
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor

BODY_FONT = "宋体"
HEADING_FONT = "黑体"


def _east_asian(style_or_run, font: str) -> None:
    rpr = style_or_run.element.get_or_add_rPr()
    fonts = rpr.find(qn("w:rFonts"))
    if fonts is None:
        fonts = rpr.makeelement(qn("w:rFonts"), {})
        rpr.insert(0, fonts)
    fonts.set(qn("w:eastAsia"), font)


def new_document(*, title: str, lang: str) -> Document:
    """An A4 document with the fonts set for `lang` and the core property title."""
    doc = Document()
    sec = doc.sections[0]
    sec.page_height, sec.page_width = Cm(29.7), Cm(21.0)
    sec.left_margin = sec.right_margin = Cm(2.4)
    sec.top_margin = sec.bottom_margin = Cm(2.2)
    normal = doc.styles["Normal"]
    normal.font.size = Pt(11)
    if lang == "zh":
        _east_asian(normal, BODY_FONT)
    for name in ("Title", "Heading 1", "Heading 2", "Heading 3"):
        style = doc.styles[name]
        style.font.color.rgb = RGBColor(0x26, 0x32, 0x38)
        if lang == "zh":
            _east_asian(style, HEADING_FONT)
    doc.core_properties.title = title
    doc.core_properties.language = "zh-CN" if lang == "zh" else "en"
    return doc


def title(doc: Document, text: str, subtitle: str = "") -> None:
    p = doc.add_paragraph(style="Title")
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    p.add_run(text).font.size = Pt(18)
    if subtitle:
        s = doc.add_paragraph(subtitle)
        s.alignment = WD_ALIGN_PARAGRAPH.CENTER


def heading(doc: Document, text: str, level: int = 1) -> None:
    doc.add_heading(text, level=level)


def para(doc: Document, text: str, *, bold: bool = False, muted: bool = False,
         indent: bool = False) -> None:
    p = doc.add_paragraph()
    if indent:
        p.paragraph_format.first_line_indent = Pt(22)
    run = p.add_run(text)
    run.bold = bold
    if muted:
        run.font.color.rgb = RGBColor(0x60, 0x7D, 0x8B)
        run.font.size = Pt(9)


def bullets(doc: Document, items: Sequence[str]) -> None:
    for text in items:
        doc.add_paragraph(text, style="List Bullet")


def table(doc: Document, head: Sequence[str], rows: Sequence[Sequence], *,
          widths: Sequence[float] | None = None, empty: str = "") -> None:
    """A grid table with a bold header row; cells as text. An empty body gets one row
    saying `empty`."""
    body = [list(r) for r in rows] or ([[empty] + [""] * (len(head) - 1)] if empty else [])
    t = doc.add_table(rows=1 + len(body), cols=len(head))
    t.style = "Table Grid"
    t.alignment = WD_TABLE_ALIGNMENT.CENTER
    for j, h in enumerate(head):
        cell = t.rows[0].cells[j]
        cell.text = ""
        run = cell.paragraphs[0].add_run(str(h))
        run.bold = True
    for i, r in enumerate(body, start=1):
        cells = t.rows[i].cells
        for j, v in enumerate(r):
            cells[j].text = "" if v is None else str(v)
    if widths:
        for row in t.rows:
            for j, w in enumerate(widths):
                row.cells[j].width = Cm(w)
    doc.add_paragraph()


def figure(doc: Document, png: bytes, caption: str, width_cm: float = 15.5) -> None:
    doc.add_picture(io.BytesIO(png), width=Cm(width_cm))
    doc.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER
    cap = doc.add_paragraph(caption)
    cap.alignment = WD_ALIGN_PARAGRAPH.CENTER
    for run in cap.runs:
        run.font.size = Pt(9)


def to_bytes(doc: Document) -> bytes:
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


__all__ = ["new_document", "title", "heading", "para", "bullets", "table", "figure",
           "to_bytes"]
