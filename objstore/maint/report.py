"""What fsck and gc found: one Problem per thing wrong, named by its key in the repository."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from objstore.repo.compaction import bulk

ERROR = "error"
WARNING = "warning"


@dataclass
class Problem:
    """One thing wrong. ``where`` is the repository key (``objects/ab/cdef…``, ``journal/<name>``,
    ``evals/…``, ``refs/…``, ``objstore.json``) or ``index``; ``object`` the object it concerns."""

    severity: str
    where: str
    what: str  # corrupt | missing | foreign | mismatch | unjournaled | unreadable | ...
    detail: str
    object: str | None = None
    repaired: str | None = None  # what --repair did about it
    cannot_repair: str | None = None  # why --repair could not

    def line(self) -> str:
        target = f" (object {self.object})" if self.object and self.object not in self.where else ""
        out = f"{self.severity:<7} {self.where}: {self.what}: {self.detail}{target}"
        if self.repaired:
            out += f"\n        repaired: {self.repaired}"
        if self.cannot_repair:
            out += f"\n        cannot repair: {self.cannot_repair}"
        return out


@dataclass
class Report:
    url: str
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, severity: str, where: str, what: str, detail: str, object: str | None = None) -> Problem:
        problem = Problem(severity, where, what, detail, object)
        self.problems.append(problem)
        return problem

    def error(self, where: str, what: str, detail: str, object: str | None = None) -> Problem:
        return self.add(ERROR, where, what, detail, object)

    def warning(self, where: str, what: str, detail: str, object: str | None = None) -> Problem:
        return self.add(WARNING, where, what, detail, object)

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR and not p.repaired]

    @property
    def clean(self) -> bool:
        """No error left (warnings, such as foreign files, do not make a repository unclean)."""
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "clean": self.clean,
            "checked": dict(self.checked),
            "problems": [asdict(p) for p in self.problems],
            "notes": list(self.notes),
        }

    def text(self) -> str:
        lines = [f"checked {self.url}: " + ", ".join(f"{n} {what}" for what, n in self.checked.items())]
        lines.extend(p.line() for p in self.problems)
        lines.extend(self.notes)
        errors = sum(1 for p in self.problems if p.severity == ERROR)
        warnings = len(self.problems) - errors
        repaired = sum(1 for p in self.problems if p.repaired)
        left = len(self.errors)
        summary = f"{errors} error(s), {warnings} warning(s)"
        if repaired:
            summary += f", {repaired} repaired"
        summary += ": clean" if left == 0 else f": {left} error(s) left"
        lines.append(summary)
        return "\n".join(lines) + "\n"


__all__ = ["Problem", "Report", "ERROR", "WARNING", "bulk"]
