"""What the `bankdw` command prints on the screen, and how wide.

On a terminal, tables fit its width (Rich wraps their cells). Piped or redirected, nothing is
cut at 80 columns: the next program or the file gets every character of every row.
"""

from __future__ import annotations

from rich.console import Console, ConsoleDimensions

# Wide enough for any row; a table takes only the width its content needs.
PIPED_WIDTH = 1_000_000


class Output(Console):
    """A terminal's width, or no limit when piped (a message is then one line, too)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(PIPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = Output()
err_console = Output(stderr=True)


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying so."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"
