"""Plain aligned tables for human output, the way ``docker ps`` prints them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

GAP = "   "


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns three spaces apart under uppercase headers.

    >>> print(format_table(["name", "managed"], [["app1", "yes"], ["db", "no"]]))
    NAME   MANAGED
    app1   yes
    db     no

    ``None`` prints as an empty cell; lines carry no trailing blanks.
    """
    lines = [[h.upper() for h in headers]]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(headers)} headers")
        lines.append(["" if cell is None else str(cell) for cell in row])
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        GAP.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


__all__ = ["format_table"]
