"""A finding's sentence as data: a message id with typed arguments, never prose.

A detector does not write its finding's sentence. It names a message it declares
(`Detector.messages`) and hands over the facts as `message_args` (who, which patient, counts,
times, thresholds, the rule that fired). The sentence is rendered where it is read, in the
reader's language, with patient fields masked (`emraudit.reports.text.finding_sentence`).

A `Message` holds the English source template (the gettext msgid the catalogs in
`emraudit/locale/` translate), its plural form and the argument that chooses between them,
and optional clauses appended when their argument is set. Templates use `%(name)s`
placeholders only: every argument is formatted to text for the language first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Clause:
    """Text appended to a sentence when `args[when]` is set (truthy)."""

    when: str
    text: str | tuple[str, str]          # a msgid, or (singular, plural) marked with Np_
    count: str | None = None             # the argument choosing the plural form


@dataclass(frozen=True)
class Message:
    """One finding sentence: template (or singular/plural pair), plural argument, clauses."""

    text: str | tuple[str, str]
    count: str | None = None
    clauses: tuple[Clause, ...] = ()

    def __post_init__(self):
        for part in (self, *self.clauses):
            if isinstance(part.text, tuple) and not part.count:
                raise TypeError(f"a plural message needs `count`: {part.text[0]!r}")

    def msgids(self) -> list[str]:
        """The singular msgids of the template and its clauses (for catalog checks)."""
        return [p.text[0] if isinstance(p.text, tuple) else p.text
                for p in (self, *self.clauses)]


__all__ = ["Message", "Clause"]
