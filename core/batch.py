"""What one batch of background work did: how many items, and the problems an operator should see."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BatchReport:
    processed: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)
