"""What one ingest run found and did, for the CLI's summary line and its JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

from photoctl.wording import plural


@dataclass
class IngestReport:
    new: int = 0
    duplicates: int = 0
    skipped: int = 0  # unchanged + unsettled
    unchanged: int = 0  # the part of skipped that was ingested before, same size and mtime
    unsettled: int = 0  # the part of skipped that is still being written
    found: int = 0  # image files seen by the walk, whatever became of them
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    seconds: float = 0.0
    job_ids: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "new": self.new,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "unchanged": self.unchanged,
            "still_being_written": self.unsettled,
            "errors": len(self.errors),
            "seconds": round(self.seconds, 3),
            "error_files": [{"file": name, "reason": reason} for name, reason in self.errors],
        }

    def summary(self) -> str:
        # The first part keeps its historic shape (scripts grep for it); the split follows.
        split = (
            f" (skipped: {self.unchanged} unchanged, {self.unsettled} still being written)"
            if self.skipped
            else ""
        )
        return (
            f"{self.new} new, {plural(self.duplicates, 'duplicate')}, {self.skipped} skipped, "
            f"{plural(len(self.errors), 'error')} in {self.seconds:.2f} s{split}"
        )
