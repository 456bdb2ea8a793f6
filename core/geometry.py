"""Boxes in image pixels: the one geometry type every layer shares (detectors, sealing, canvas, records)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int
    y1: int
    frame: int = 0

    def clip(self, rows: int, cols: int) -> "Box":
        x0, x1 = sorted((max(0, min(cols, int(self.x0))), max(0, min(cols, int(self.x1)))))
        y0, y1 = sorted((max(0, min(rows, int(self.y0))), max(0, min(rows, int(self.y1)))))
        return Box(x0, y0, x1, y1, self.frame)

    @property
    def empty(self) -> bool:
        return self.x1 <= self.x0 or self.y1 <= self.y0

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)
