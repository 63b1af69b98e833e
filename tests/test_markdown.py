"""The pull-request comment (placer.render.markdown): whole when it fits, cut to its limit when
not, every delete and update shown before any create, and each cut section says what it left out."""

from __future__ import annotations

import json
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from placer.render.markdown import COMMENT_CHARS, LimitTooLow, render
from tests.fleetkit import inference, location, pool, training

ROOT = Path(__file__).resolve().parent.parent


def big_plan(n: int = 3000) -> dict:
    """n changes (every tenth a delete, every seventh an update, the rest creates), n placements
    and routes, a few unmet rows and violations: a fleet of a few thousand deployments."""
    changes, placements, routes = [], [], []
    for i in range(n):
        action = "delete" if i % 10 == 0 else "update" if i % 7 == 0 else "create"
        before = None if action == "create" else {"replicas": 2}
        after = None if action == "delete" else {"replicas": 3}
        changes.append({"address": f"deployment/model-{i:05d}@pool-{i % 97:03d}", "action": action, "phase": 2,
                        "before": before, "after": after, "reasons": ["demand moved"]})
        placements.append({"model": f"model-{i:05d}", "pool": f"pool-{i % 97:03d}", "replicas": 3})
        routes.append({"model": f"model-{i:05d}", "rate": 100.0})
    return {
        "changes": changes, "placements": placements, "routes": routes,
        "unmet": [{"model": f"model-{i:05d}", "demandLocation": "fra", "rate": 5.0} for i in range(3)],
        "unplacedReplicas": [{"model": "train-x", "replicas": 2}],
        "violations": [{"policy": "spread", "enforcement": "preferred", "amount": 1, "detail": f"model-{i:05d}"}
                       for i in range(4)],
        "cost": {"totalUsdPerHour": 123.0}, "solver": {"status": "OPTIMAL", "wallSeconds": 1.0, "gap": 0.0},
        "servedRate": 1.0, "models": {},
    }


def test_a_plan_that_fits_is_whole_and_says_nothing_was_cut() -> None:
    plan = big_plan(20)
    text = render(plan)
    assert "not shown" not in text
    assert all(c["address"] in text for c in plan["changes"])
    assert text == render(plan, None)


def test_the_cost_change_of_an_unchanged_plan_reads_zero_not_minus_zero() -> None:
    plan = {**big_plan(3), "costBeforeUsdPerHour": 123.0 + 1e-9}
    assert "Cost: **123.00 → 123.00 USD/h** (0.00)" in render(plan)
    plan["costBeforeUsdPerHour"] = 1_000.0
    assert "Cost: **1,000.00 → 123.00 USD/h** (-877.00), from the cost at the last apply, for the fleet as it " \
        "was then" in render(plan)  # not what runs now priced against today's demand


@pytest.mark.parametrize("limit", [2_500, 10_000, 40_000, COMMENT_CHARS])
def test_a_long_plan_keeps_within_the_limit_with_every_delete_and_update_first(limit: int) -> None:
    plan = big_plan()
    whole = render(plan, None)
    assert len(whole) > 4 * COMMENT_CHARS  # the case: far over GitHub's 65,536
    text = render(plan, limit, "out/plan.json")
    assert len(text) <= limit
    assert "**Plan: 2314 to create, 386 to update, 300 to delete.**" in text  # the counts are never cut
    shown = set(re.findall(r"^[-+~] (deployment/\S+)", text, re.M))
    by_action = {a: {c["address"] for c in plan["changes"] if c["action"] == a} for a in ("delete", "update", "create")}
    hidden = {a: len(addresses - shown) for a, addresses in by_action.items()}
    # a create is shown only once every delete and update is
    assert not (hidden["delete"] and (by_action["update"] | by_action["create"]) & shown)
    assert not (hidden["update"] and by_action["create"] & shown)
    left = sum(hidden.values())
    assert left, "the limit cuts some changes"
    counts = ", ".join(f"{n} {a}" for a, n in hidden.items() if n)
    if shown:
        assert f"_… and {left} more changes not shown ({counts}): " in text
    else:
        assert f"_{left} changes not shown ({counts}): " in text
    assert "`placer show out/plan.json` prints them all" in text
    # the rarer, graver rows come before changes: every unmet row and violation is there
    assert "| train-x | (replicas) | 2 |" in text and "| model-00002 | fra | 5 |" in text
    assert "| spread | preferred | 4 | 4 violations, the first model-00000; `placer show out/plan.json` lists them " \
        "all |" in text  # a preferred policy's many in one row, once rows must be cut
    # what is shown keeps the plan's order
    order = [c["address"] for c in plan["changes"] if c["address"] in shown]
    assert re.findall(r"^[-+~] (deployment/\S+)", text, re.M) == order


def test_a_preferred_policys_many_violations_take_one_row_when_changes_are_cut() -> None:
    """One preferred policy's 187 violations (0.5 each) took 17,889 of a comment's 59,895
    characters while 242 changes were cut: once rows must be cut, they are one row, and a
    required policy's and a preferred policy's single violation stay rows of their own."""
    plan = big_plan(1000)
    plan["violations"] = [{"policy": "prefers-onprem", "enforcement": "preferred", "amount": 0.5,
                           "detail": f"model-{i:05d}: 1 on cloud-{i:03d}"} for i in range(187)]
    plan["violations"] += [{"policy": "budget", "enforcement": "required", "amount": 3, "detail": "over by 3"},
                           {"policy": "spread", "enforcement": "preferred", "amount": 1, "detail": "model-00001"}]
    assert "| prefers-onprem | preferred | 0.5 | model-00186: 1 on cloud-186 |" in render(plan, None)
    text = render(plan, 40_000, "plan.json")
    assert len(text) <= 40_000
    assert "| prefers-onprem | preferred | 93.5 | 187 violations, the first model-00000: 1 on cloud-000; " \
        "`placer show plan.json` lists them all |" in text
    assert "| budget | required | 3 | over by 3 |" in text and "| spread | preferred | 1 | model-00001 |" in text
    assert "model-00186: 1 on cloud-186" not in text and "policy violations not shown" not in text
    assert len(re.findall(r"^[-+~] deployment/", text, re.M)) > 500  # 187 rows gave room for 400


@pytest.mark.parametrize("limit", [0, 100, 600])
def test_a_limit_below_the_header_and_notes_is_refused_with_the_least_that_fits(limit: int) -> None:
    plan = big_plan(50)
    with pytest.raises(LimitTooLow) as refused:
        render(plan, limit)
    assert refused.value.floor > limit
    assert len(render(plan, refused.value.floor)) == refused.value.floor
    assert len(render(plan, refused.value.floor + 200)) <= refused.value.floor + 200


def test_show_markdown_cuts_at_max_chars_and_zero_means_whole(tmp_path: Path) -> None:
    """Through the CLI, on a real saved plan: the default keeps under GitHub's limit, --max-chars
    sets another, 0 prints it whole."""
    docs = [location("a"), pool("p", "a", usd=1.0, count=40)]
    docs += [inference(f"m{i:03d}", [{"location": "a", "rate": 100}]) for i in range(120)]
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(docs))
    plan = tmp_path / "plan.json"

    def placer(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "placer", *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=300)

    r = placer("plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    n = len(json.loads(plan.read_text())["changes"])
    whole = placer("show", str(plan), "--markdown", "--max-chars", "0")
    assert whole.returncode == 0 and "not shown" not in whole.stdout and whole.stdout.count("\n+ ") == n
    cut = placer("show", str(plan), "--markdown", "--max-chars", "3000")
    assert cut.returncode == 0 and len(cut.stdout) <= 3000 and cut.stdout.endswith("all._\n")  # its newline too
    assert "more changes not shown" in cut.stdout and f"`placer show {plan}` prints them all" in cut.stdout
    assert placer("show", str(plan), "--markdown").stdout == whole.stdout  # small enough for the default
    r = placer("show", str(plan), "--max-chars", "10")
    assert r.returncode == 1 and "--max-chars limits --markdown" in r.stderr
    # below what is never cut (the counts, costs and notes): refused, not printed longer than asked
    low = placer("show", str(plan), "--markdown", "--max-chars", "500")
    assert low.returncode == 1 and low.stdout == "", low.stdout
    found = re.search(r"--max-chars 500: the comment's counts, costs and notes on what it cuts take ([\d,]+) "
                      r"characters, which are never cut; give at least (\d+), or 0 for no limit", low.stderr)
    assert found is not None, low.stderr
    least = placer("show", str(plan), "--markdown", "--max-chars", found.group(2))
    assert least.returncode == 0 and len(least.stdout) == int(found.group(2))  # its final newline among them


def test_cost_per_million_served_leaves_out_what_training_costs(tmp_path: Path) -> None:
    """The cost per million units served is what serving costs: a training model's compute beside an
    inference model's was counted per unit served (81 USD/h over 100 units/s read 225 USD, not 2.78)."""
    docs = [location("a"), pool("p", "a", usd=1.0), pool("t", "a", gpu="H100-80GB", usd=10.0),
            inference("chat", [{"location": "a", "rate": 100}]), training("train", 1, gpuTypes=["H100-80GB"])]
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(docs))
    plan = tmp_path / "plan.json"
    run = [sys.executable, "-m", "placer"]
    r = subprocess.run([*run, "plan", str(fleet), "-o", str(plan)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Cost per million units served: 2.7778 USD" in r.stdout, r.stdout
    shown = subprocess.run([*run, "show", str(plan), "--markdown"], capture_output=True, text=True, cwd=ROOT,
                           timeout=300)
    assert "| compute | 81.00 |" in shown.stdout and "Cost per million units served: 2.7778 USD" in shown.stdout


def test_text_from_the_fleet_cannot_break_out_of_its_block_or_row() -> None:
    """A change's reason and a violation's detail quote the fleet's text: three backticks in a
    reason closed the diff block (the rest of the comment rendered as markdown: a table, an image,
    a mention), and a line break split a table row."""
    plan = big_plan(2)
    plan["changes"][0]["reasons"] = ["retired: v```\n| injected | table |\n<img src=x> @here"]
    plan["violations"][0]["detail"] = "a\nb | c <b>bold</b>"
    text = render(plan)
    block = text.split("#### Changes", 1)[1]
    fence = re.match(r"\s*(`+)diff\n", block)
    assert fence is not None and len(fence.group(1)) == 4, block[:80]
    inside, closing, _ = block.partition("\n" + fence.group(1) + "\n")
    assert closing and len(inside.split("diff\n", 1)[1].split("\n")) == len(plan["changes"])  # a line a change
    assert "| a b \\| c &lt;b>bold&lt;/b> |" in text


def gfm_cells(row: str) -> list[str]:
    """A table row's cells as GitHub splits them (cmark-gfm): a backslash escapes any ASCII punctuation
    after it, itself included, and every other pipe ends a cell."""
    cells, cell, i = [], "", 0
    while i < len(row):
        if row[i] == "\\" and i + 1 < len(row) and row[i + 1] in string.punctuation:
            cell, i = cell + row[i:i + 2], i + 2
        elif row[i] == "|":
            cells, cell, i = [*cells, cell], "", i + 1
        else:
            cell, i = cell + row[i], i + 1
    return [c.strip() for c in [*cells, cell][1:-1]]


def test_a_backslash_before_a_pipe_stays_in_its_cell() -> None:
    """A detail or reason `a\\|b` was written `a\\\\|b`: GitHub reads `\\\\` as an escaped backslash and
    the pipe after it as the cell's end, and the row had a column too many."""
    plan = big_plan(2)
    plan["violations"][0]["detail"] = "a\\|b \\ c\\"
    plan["retired"] = [{"model": "m", "reason": "family x\\|y"}]
    rows = [line for line in render(plan).splitlines() if line.startswith("| spread |") or line.startswith("| m |")]
    assert gfm_cells(rows[0]) == ["spread", "preferred", "1", "a\\\\\\|b \\\\ c\\\\"], rows[0]
    assert gfm_cells(rows[-1]) == ["m", "family x\\\\\\|y"], rows[-1]


def test_a_code_span_in_a_cell_keeps_its_backslashes() -> None:
    """A backslash in a code span was doubled as outside one, where Markdown shows it as it is: the
    command `placer show 'plans\\x.json'` read `plans\\\\x.json`, another file. Its pipes are still
    escaped, a backslash before one doubled, so that the row keeps its cells."""
    plan = big_plan(2)
    plan["violations"][0]["detail"] = "run `placer show 'plans\\x.json'` or `a|b` or `c\\|d`, not x\\y"
    rows = [line for line in render(plan).splitlines() if line.startswith("| spread |")]
    assert gfm_cells(rows[0]) == [
        "spread", "preferred", "1",
        "run `placer show 'plans\\x.json'` or `a\\|b` or `c\\\\\\|d`, not x\\\\y"], rows[0]


def test_the_comment_names_the_models_a_policy_retired_as_the_summary_does() -> None:
    """`placer show` lists each retired model with the policy's reason; the comment a reviewer reads
    left them out: a fleet of 29 models showed 24, and five vanished from the pull request unsaid.
    They are cut, when the comment must be, after the changes and before the placements."""
    plan = {**big_plan(2), "retired": [
        {"model": "chat-v1", "reason": "policy retire-stale: version 1 is older than the newest 2 | of family chat"},
        {"model": "img-v1", "reason": "policy retire-stale: unused for 149 days (lastUsed 2026-07-02, limit 30)"}]}
    text = render(plan)
    assert "#### Retired models" in text and "| model | why |" in text, text
    assert "| chat-v1 | policy retire-stale: version 1 is older than the newest 2 \\| of family chat |" in text
    assert "| img-v1 | policy retire-stale: unused for 149 days (lastUsed 2026-07-02, limit 30) |" in text
    assert text.index("#### Retired models") < text.index("<summary>Placements</summary>")
    plan = {**big_plan(3000), "retired": plan["retired"] * 400}
    cut = render(plan, 20_000)
    assert len(cut) <= 20_000 and "retired models not shown" in cut, cut[-2000:]


def test_a_violations_amount_is_written_out_not_in_exponent_notation() -> None:
    """A budget over by 14,814,000 USD/h read 1.4813e+07 in the amount column (and rounded to 6
    digits); the amounts are as the plan's other numbers, with thousands separators."""
    plan = big_plan(3)
    plan["violations"] = [{"policy": "budget-cap", "enforcement": "preferred", "amount": 14_814_000.0,
                           "detail": "compute over budget"},
                          {"policy": "headroom", "enforcement": "preferred", "amount": 0.004, "detail": "pool-1"},
                          {"policy": "headroom", "enforcement": "preferred", "amount": 1234567.5, "detail": "pool-2"}]
    text = render(plan, None)
    assert "| budget-cap | preferred | 14,814,000 | compute over budget |" in text, text
    assert "| headroom | preferred | 0.004 | pool-1 |" in text and "| headroom | preferred | 1,234,567.5 | pool-2 |" in text
    cut = render(plan, len(text) - 1, "plan.json")  # cut: a preferred policy's many in one row, summed
    assert "| headroom | preferred | 1,234,567.504 | 2 violations" in cut, cut


ARTIFACT = "https://github.com/acme/fleet/actions/runs/123/artifacts/456"


def test_the_note_on_rows_cut_links_the_plan_where_its_readers_download_it() -> None:
    """The note named the plan by the path `show` was given: in `pipeline.sh pr` the CI runner's
    (`/home/runner/work/fleet/fleet/out/plan.json`), which no reviewer has, and nowhere said where the
    whole plan is. With the URL of the job's artifact, the note links it and names the file by its
    own name, as the reviewer downloads it."""
    plan = big_plan()
    text = render(plan, 10_000, "/home/runner/work/fleet/fleet/out/plan.json", ARTIFACT)
    assert len(text) <= 10_000
    where = f"`placer show plan.json` ([download plan.json]({ARTIFACT}))"
    assert f"the comment has no room for them; {where} prints them all._" in text
    assert f"4 violations, the first model-00000; {where} lists them all |" in text
    assert "/home/runner" not in text
    # without one, as before: the path as given
    assert "`placer show out/plan.json` prints them all" in render(plan, 10_000, "out/plan.json")


def test_show_markdown_plan_url_is_linked_and_checked(tmp_path: Path) -> None:
    docs = [location("a"), pool("p", "a", usd=1.0, count=40)]
    docs += [inference(f"m{i:03d}", [{"location": "a", "rate": 100}]) for i in range(30)]
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(docs))
    plan = tmp_path / "out" / "plan.json"
    plan.parent.mkdir()

    def placer(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "placer", *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=300)

    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    cut = placer("show", str(plan), "--markdown", "--max-chars", "2000", "--plan-url", ARTIFACT)
    assert cut.returncode == 0 and len(cut.stdout) <= 2000, cut.stderr
    assert f"`placer show plan.json` ([download plan.json]({ARTIFACT})) prints them all._" in cut.stdout
    r = placer("show", str(plan), "--plan-url", ARTIFACT)
    assert r.returncode == 1 and "--plan-url is linked from --markdown's comment; add --markdown" in r.stderr
    r = placer("show", str(plan), "--markdown", "--plan-url", "out/plan.json")
    assert r.returncode == 1 and "give the http(s) URL the comment's readers download the plan from" in r.stderr
