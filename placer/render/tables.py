"""Tables for a terminal whose numbers are never cut: the plan's summary and whatif print theirs here."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

LABEL, NUMBER, TEXT = "label", "number", "text"  # a column's kind, for ``print_table``
LABEL_WIDTH = 8  # the narrowest a label column folds to


def print_table(console: Console, table: Table, columns: Sequence[tuple[str, str]],
                rows: Sequence[Sequence[str | Text]]) -> None:
    """``table`` with ``columns`` (header, kind) and ``rows``, printed so that a number is never cut:
    a number column is as wide as its widest cell; labels and text fold. On a terminal too narrow
    even for that, the table is as wide as it needs (40 columns cut "+5,020.02" to "+5,020.…", and
    the plan's summary folded 1,500,000,000 served into "1,500,00" over "0,000")."""
    needed = 0
    for i, (header, kind) in enumerate(columns):
        widest = max([len(header), *(len(r[i]) for r in rows)])
        if kind == NUMBER:
            table.add_column(header, justify="right", no_wrap=True, min_width=widest)
        else:
            widest = min(widest, LABEL_WIDTH)
            table.add_column(header, overflow="fold", min_width=widest)
        needed += widest + 2 + (i > 0)  # its padding, and the rule before it
    for r in rows:
        table.add_row(*r)
    if console.width >= needed:
        console.print(table)
        return
    width = console.width  # print() keeps to the console's width, whatever it is asked
    console.width = needed
    try:
        console.print(table)
    finally:
        console.width = width
