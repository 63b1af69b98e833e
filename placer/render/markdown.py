"""A plan as Markdown, for pull-request comments.

A comment has a size limit (GitHub refuses a body over 65,536 characters, and a fleet of a few
hundred models plans more changes than that holds), so ``render`` keeps within ``max_chars``:
the header, costs and counts always, then as many rows as fit of unmet demand, policy
violations (a preferred policy's many in one row, once rows must be cut), changes (every
delete and update before any create), retired models and placements, in that order, each cut section saying
how many rows it left out and where to see them all. The limit holds the comment's final
newline.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from placer.render.report import (
    COST_TERMS,
    SYMBOLS,
    amount_text,
    change_detail,
    counts_line,
    gap_text,
    model_rows,
    rate_column,
    signed,
    usd_per_million,
)

COMMENT_CHARS = 60_000  # under GitHub's 65,536 for a comment body, with room for a marker line


class LimitTooLow(ValueError):
    """A ``max_chars`` below what the comment always holds: its header and costs, and the note on
    each section it cut (``floor`` characters in all, the least that fits)."""

    def __init__(self, floor: int) -> None:
        self.floor = floor
        super().__init__(f"the comment's counts, costs and notes on what it cuts take {floor:,} characters")


_CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")


def _cell(text: str) -> str:
    """Text for a table cell: on one line, its backslashes and pipes escaped and no HTML tag opened (a
    policy's detail quotes the fleet's text: a line break split the row, and so did a backslash before a
    pipe, `a\\|b` written `a\\\\|b`, which GitHub reads as an escaped backslash and a cell's end). In a
    code span, where Markdown shows a backslash as it is, only a backslash before a pipe is doubled (a
    command `placer show 'plans\\x.json'` was shown with two backslashes, naming another file)."""
    line = " ".join(text.split("\n"))
    out, at = [], 0
    for span in _CODE_SPAN.finditer(line):
        out.append(_escaped(line[at:span.start()]))
        out.append(span.group(0).replace("\\|", "\\\\|").replace("|", "\\|"))
        at = span.end()
    out.append(_escaped(line[at:]))
    return "".join(out)


def _escaped(text: str) -> str:
    """Markdown text outside code spans, its backslashes, pipes and tag openings escaped."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _fence(rows: list[str]) -> str:
    """A code fence longer than any run of backticks in ``rows`` (three in a change's reason closed
    the diff block, and the rest of the comment rendered as markdown)."""
    longest = max((len(run) for row in rows for run in re.findall(r"`+", row)), default=0)
    return "`" * max(3, longest + 1)


@dataclass
class _Section:
    """A titled list of rows, cut to fit when the comment is too long."""

    head: list[str]
    rows: list[str]
    foot: list[str]
    what: str  # "changes", "placements", ...: for the note on rows left out
    rank: list[int] = field(default_factory=list)  # rows with a lower rank are kept first (default: in order)
    kinds: list[str] = field(default_factory=list)  # what each row is, counted in the note on rows left out
    keep: list[bool] = field(default_factory=list)

    def _order(self) -> list[int]:
        """The rows, best ranked first; in their own order within a rank."""
        return sorted(range(len(self.rows)), key=lambda i: (self.rank[i] if self.rank else 0, i))

    def _note(self, left: dict[str, int], total: int, some_kept: bool, show: str) -> list[str]:
        of = f" ({', '.join(f'{n} {kind}' for kind, n in left.items())})" if left else ""
        why = f"not shown{of}: the comment has no room for them; {show} prints them all._"
        return [f"_… and {total} more {self.what} {why}" if some_kept else f"_{total} {self.what} {why}", ""]

    def text(self, show: str) -> list[str]:
        if not self.rows:
            return []
        keep = self.keep or [True] * len(self.rows)
        kept = [r for r, k in zip(self.rows, keep, strict=True) if k]
        left = len(self.rows) - len(kept)
        if not left:
            return [*self.head, *self.rows, *self.foot]
        counts: dict[str, int] = {}
        for i in self._order():  # kinds counted in the order rows are kept
            if i < len(self.kinds) and not keep[i]:
                counts[self.kinds[i]] = counts.get(self.kinds[i], 0) + 1
        note = self._note(counts, left, bool(kept), show)
        return [*self.head, *kept, *self.foot, *note] if kept else note

    def note_chars(self, show: str) -> int:
        """The most the note on rows left out can take: every row left out, of every kind."""
        n = len(self.rows)
        worst = self._note({kind: n for kind in dict.fromkeys(self.kinds)}, n, True, show) if n else []
        return sum(len(line) + 1 for line in worst)

    def fit(self, budget: int) -> int:
        """Keep the rows, best ranked first, that fit with the title within ``budget``
        characters (the note on the rest has its room already); returns the characters used."""
        used = sum(len(line) + 1 for line in self.head + self.foot)
        self.keep = [False] * len(self.rows)
        for i in self._order():
            size = len(self.rows[i]) + 1
            if used + size > budget:
                break
            self.keep[i] = True
            used += size
        return used if any(self.keep) else 0


def _header(plan: dict[str, Any]) -> list[str]:
    cost = plan.get("cost", {})
    solver = plan.get("solver", {})
    lines = ["### placer plan", ""]
    lines.append(f"**{counts_line(plan)}**")
    lines.append("")
    before = plan.get("costBeforeUsdPerHour")
    after = float(cost.get("totalUsdPerHour", 0.0))
    if isinstance(before, int | float):
        delta = after - before
        lines.append(f"Cost: **{before:,.2f} → {after:,.2f} USD/h** ({signed(delta)}), from the cost at the last "
                     "apply, for the fleet as it was then")
    else:
        lines.append(f"Cost: **{after:,.2f} USD/h** (no prior apply)")
    per_m = usd_per_million(plan)
    if per_m is not None:
        lines.append(f"Cost per million units served: {per_m:,.4f} USD")
    gap = solver.get("gap")
    lines.append(f"Solver: {solver.get('status')} in {solver.get('wallSeconds', 0):.2f} s, gap {gap_text(gap)}"
                 + (f" ({solver['note']})" if solver.get("note") else ""))
    lines.append("")
    lines += ["| term | USD/h |", "|---|---:|"]
    for label, key in (*COST_TERMS, ("**total**", "totalUsdPerHour")):
        lines.append(_row([label, f"{cost.get(key, 0):,.2f}"]))
    lines.append(_row(["churn (one-off USD)", f"{cost.get('churnUsd', 0):,.2f}"]))
    lines.append("")
    return lines


def _violation_rows(violations: list[dict[str, Any]], show: str | None) -> list[str]:
    """A row a violation; with ``show`` (the comment must cut rows), a preferred policy's many in one
    row: how many, their amount, the first, and where to see them all (one preferred policy's 187
    rows took 17,889 characters of a comment that cut 242 changes for want of room)."""
    if show is None:
        return [_row([v["policy"], v["enforcement"], amount_text(v['amount']), v["detail"]]) for v in violations]
    preferred: dict[str, list[dict[str, Any]]] = {}
    for v in violations:
        if v["enforcement"] == "preferred":
            preferred.setdefault(v["policy"], []).append(v)
    rows, said = [], set()
    for v in violations:
        many = preferred.get(v["policy"]) if v["enforcement"] == "preferred" else None
        if many is None or len(many) == 1:
            rows.append(_row([v["policy"], v["enforcement"], amount_text(v['amount']), v["detail"]]))
        elif v["policy"] not in said:
            said.add(v["policy"])
            rows.append(_row([v["policy"], v["enforcement"], amount_text(sum(float(w['amount']) for w in many)),
                              f"{len(many)} violations, the first {v['detail']}; {show} lists them all"]))
    return rows


def show_text(plan_path: str, plan_url: str | None = None) -> str:
    """Where the note on rows cut sends the reader: `placer show PLAN`; with ``plan_url`` (where the
    comment's reader downloads the plan file: a CI job's artifact), `placer show` of the file's own
    name and a link to it. The path as given named a file on the CI runner
    (`/home/runner/work/fleet/fleet/out/plan.json`), which no reviewer has, and said nowhere where the
    plan the comment cut is."""
    if plan_url is None:
        return f"`placer show {shlex.quote(plan_path)}`"
    name = PurePath(plan_path).name or plan_path
    return f"`placer show {shlex.quote(name)}` ([download {name}]({plan_url.replace(')', '%29')}))"


def render(plan: dict[str, Any], max_chars: int | None = COMMENT_CHARS, plan_path: str = "PLAN",
           plan_url: str | None = None) -> str:
    """The plan as Markdown, within ``max_chars`` characters (None: all of it); ``plan_path`` is
    named in the note on what was cut, with a link to ``plan_url`` where given (``show_text``). The
    header and costs are never cut: LimitTooLow where they and the notes do not fit (a limit of 500
    printed 847 characters)."""
    changes = plan.get("changes", [])
    first = {"delete": 0, "update": 1}  # what a reviewer must see before what is only added
    diff = _Section(["#### Changes", "", "```diff"], [], ["```", ""], "changes")
    for c in changes:
        sym = SYMBOLS.get(c["action"], " ")
        why = f"  # {'; '.join(c.get('reasons') or [])}" if c.get("reasons") else ""
        diff.rows.append(" ".join(f"{sym} {c['address']} [phase {c['phase']}] {change_detail(c)}{why}".split("\n")))
        diff.rank.append(first.get(c["action"], 2))
        diff.kinds.append(c["action"])
    fence = _fence(diff.rows)
    diff.head[-1], diff.foot[0] = f"{fence}diff", fence
    unmet = _Section(["#### Unmet demand", "", "| model | where | rate |", "|---|---|---:|"], [], [""],
                     "unmet demand rows")
    rates = rate_column([u["rate"] for u in plan.get("unmet", [])])
    unmet.rows += [_row([u["model"], u["demandLocation"], rate]) for u, rate in zip(plan.get("unmet", []), rates, strict=True)]
    unmet.rows += [_row([u["model"], "(replicas)", str(u["replicas"])]) for u in plan.get("unplacedReplicas", [])]
    violations = _Section(["#### Policy violations", "", "| policy | enforcement | amount | detail |",
                           "|---|---|---:|---|"], [], [""], "policy violations")
    violations.rows += _violation_rows(plan.get("violations", []), None)
    # as the summary lists them: the comment left them out, and a retired model vanished from it unsaid
    retired = _Section(["#### Retired models", "", "| model | why |", "|---|---|"], [], [""], "retired models")
    retired.rows += [_row([r["model"], r["reason"]]) for r in plan.get("retired", [])]
    placements = _Section(["<details><summary>Placements</summary>", "", "| model | placement | served | unmet |",
                           "|---|---|---:|---:|"], [], ["", "</details>", ""], "placements")
    rows = model_rows(plan)
    placements.rows += [_row([m, where, s, u]) for (m, where, _, _), s, u in
                        zip(rows, rate_column([r[2] for r in rows]), rate_column([r[3] for r in rows]), strict=True)]
    head = _header(plan)
    show = show_text(plan_path, plan_url)
    body = (diff, unmet, violations, retired, placements)  # in the comment's order
    whole = "\n".join(head + [line for section in body for line in section.text(show)])
    if max_chars is not None and len(whole) > max_chars:
        violations.rows = _violation_rows(plan.get("violations", []), show)
        sections = (unmet, violations, diff, retired, placements)  # the rarer and graver first
        notes = [s.note_chars(show) for s in sections]  # each may need to say what it left out
        budget = max_chars - sum(len(line) + 1 for line in head) - sum(notes)
        for section, note in zip(sections, notes, strict=True):
            budget -= section.fit(budget)
            if all(section.keep):
                budget += note  # nothing left out: its note's room goes to the sections after it
    text = "\n".join(head + [line for section in body for line in section.text(show)])
    if max_chars is not None and len(text) > max_chars:  # every row was cut (the notes had their room kept)
        raise LimitTooLow(len(text))
    return text
