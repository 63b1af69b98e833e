"""Hostile fleet input is refused quickly and cleanly: one located message, exit 1, no traceback.

Inputs too big or too odd to commit are generated here at run time: alias bombs, deep
nesting, a file over the size limit, a fleet over the total limit, binary data, symbolic
link loops, a directory without YAML files, text that is not UTF-8.
"""

from __future__ import annotations

import os
import re
import time
import tracemalloc
from pathlib import Path

import pytest

from placer.cli import main
from placer.spec import source
from placer.spec.source import MAX_DEPTH, MAX_FILE_BYTES, MAX_TOTAL_BYTES, parse_text, read_fleet_dir

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "tests" / "data" / "valid" / "base" / "fleet.yaml"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ALIASES_REFUSED = "invalid YAML: anchors and aliases (*name) are not allowed in fleet files; write the value out"


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """`placer validate PATH` in-process: exit code and stderr lines."""
    capsys.readouterr()
    code = main(["validate", str(path)])
    err = ANSI.sub("", capsys.readouterr().err).splitlines()
    assert not any("Traceback" in line or "internal error" in line for line in err), err
    return code, err


def fleet_with(tmp_path: Path, name: str, content: str | bytes) -> Path:
    """A fleet directory: the valid base fleet plus one more file."""
    fleet = tmp_path / "fleet"
    fleet.mkdir(exist_ok=True)
    (fleet / "base.yaml").write_bytes(BASE.read_bytes())
    data = content.encode() if isinstance(content, str) else content
    (fleet / name).write_bytes(data)
    return fleet


def billion_laughs(levels: int = 10) -> str:
    lines = ['lol0: &lol0 "lol"']
    for i in range(1, levels):
        refs = ", ".join([f"*lol{i - 1}"] * 10)
        lines.append(f"lol{i}: &lol{i} [{refs}]")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- aliases


def test_billion_laughs_is_refused_without_expanding() -> None:
    text = billion_laughs()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        docs, diags = parse_text(text, "bomb.yaml")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 5.0  # refused, not expanded (a loaded machine's margin: the expansion would not end)
    assert peak < 5 * 1024 * 1024
    assert docs == []
    assert [str(d) for d in diags] == [f"bomb.yaml:2: {ALIASES_REFUSED}"]


def test_billion_laughs_in_a_fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = fleet_with(tmp_path, "bomb.yaml", billion_laughs())
    started = time.perf_counter()
    code, err = validate(fleet, capsys)
    assert time.perf_counter() - started < 5.0
    assert code == 1
    assert err == [f"{fleet}/bomb.yaml:2: {ALIASES_REFUSED}", "1 error in the fleet; nothing was planned or changed."]


def test_merge_key_with_alias_is_refused() -> None:
    text = "a: &a {x: 1}\nb:\n  <<: *a\n  y: 2\n"
    docs, diags = parse_text(text, "m.yaml")
    assert docs == []
    assert [str(d) for d in diags] == [f"m.yaml:3: {ALIASES_REFUSED}"]


def test_a_merge_key_without_an_alias_is_refused_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It was "could not determine a constructor for the tag 'tag:yaml.org,2002:merge'"."""
    fleet = fleet_with(tmp_path, "merge.yaml", "apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: dc9}\n"
                       "spec:\n  <<: {environment: edge}\n  jurisdiction: EU\n")
    code, err = validate(fleet, capsys)
    assert code == 1
    assert err[:-1] == [f"{fleet}/merge.yaml:5: invalid YAML: merge keys (<<) are not allowed in fleet files; "
                        "write the keys out"]
    docs, diags = parse_text("a: 1\n'<<': 2\n", "q.yaml")  # quoted, it is a key like any other
    assert diags == [] and docs[0].data == {"a": 1, "<<": 2}


# ---------------------------------------------------------------- nesting


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    depth = MAX_DEPTH + 8
    text = "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "leaf: 1\n"
    docs, diags = parse_text(text, "deep.yaml")
    assert docs == []
    assert [str(d) for d in diags] == [f"deep.yaml:1: document nested deeper than {MAX_DEPTH} levels"]


def test_nesting_within_the_limit_is_read() -> None:
    depth = MAX_DEPTH - 2
    text = "a: " + "[" * depth + "1" + "]" * depth + "\n"
    docs, diags = parse_text(text, "ok.yaml")
    assert diags == []
    assert len(docs) == 1


@pytest.mark.parametrize("depth", [50_000])
def test_nesting_past_the_recursion_limit_is_refused(depth: int) -> None:
    text = "a: " + "[" * depth + "]" * depth + "\n"
    started = time.perf_counter()
    docs, diags = parse_text(text, "deep.yaml")
    assert time.perf_counter() - started < 20.0
    assert docs == []
    assert [str(d) for d in diags] == ["deep.yaml:1: invalid YAML: nested too deeply"]


def test_deep_nesting_in_a_fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = fleet_with(tmp_path, "deep.yaml", "spec: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    code, err = validate(fleet, capsys)
    assert code == 1
    assert err[:-1] == [f"{fleet}/deep.yaml:1: invalid YAML: nested too deeply"]


# ---------------------------------------------------------------- size


def test_file_over_the_size_limit_is_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    size = MAX_FILE_BYTES + 1
    fleet = fleet_with(tmp_path, "huge.yaml", b"# " + b"x" * (size - 3) + b"\n")
    assert (fleet / "huge.yaml").stat().st_size == size
    started = time.perf_counter()
    code, err = validate(fleet, capsys)
    assert time.perf_counter() - started < 5.0
    assert code == 1
    assert err == [
        f"{fleet}/huge.yaml:1: file is {size} bytes, over the {MAX_FILE_BYTES}-byte (1 MiB) limit for fleet files: split "
        "its documents over several files (a fleet may hold 16 MiB in all)",
        "1 error in the fleet; nothing was planned or changed.",
    ]


def test_fleet_over_the_total_limit_is_refused_before_any_file_is_read(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The sizes are added up first: twenty 1 MB comment files took 24 s to parse before the limit
    was found, and every file before the limit was read (here: refused as binary)."""
    per_file = MAX_FILE_BYTES - 1
    n = MAX_TOTAL_BYTES // per_file + 1
    for i in range(n):  # sparse files of NUL bytes: each under the file limit, together over the fleet's
        with open(tmp_path / f"f{i:02d}.yaml", "wb") as f:
            f.truncate(per_file)
    with open(tmp_path / "huge.yaml", "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # refused on its own, and not counted

    def unread(self: Path) -> bytes:
        raise AssertionError(f"{self} was read")

    monkeypatch.setattr(Path, "read_bytes", unread)
    docs, diags = read_fleet_dir(tmp_path)
    assert docs == []
    assert [str(d) for d in diags] == [
        f"{tmp_path / 'huge.yaml'}:1: file is {MAX_FILE_BYTES + 1} bytes, over the {MAX_FILE_BYTES}-byte (1 MiB) "
        "limit for fleet files: split its documents over several files (a fleet may hold 16 MiB in all)",
        f"{tmp_path}:0: the {n} YAML files here are {n * per_file} bytes in all, over the {MAX_TOTAL_BYTES}-byte "
        "(16 MiB) limit for a fleet; none was read: name the fleet's own directory, not one above it"]


def test_many_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "MAX_FILES", 5)
    for i in range(7):
        (tmp_path / f"f{i}.yaml").write_text("{}\n")
    _, diags = read_fleet_dir(tmp_path)
    assert [str(d) for d in diags] == [f"{tmp_path}:1: more than 5 YAML files below this directory, the most a fleet "
                                       "may have: name the fleet's own directory, not one above it"]


# ---------------------------------------------------------------- binary and encodings


def test_binary_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = fleet_with(tmp_path, "model.yaml", bytes(range(256)) * 4)
    code, err = validate(fleet, capsys)
    assert code == 1
    assert err[:-1] == [f"{fleet}/model.yaml:1: binary file (contains NUL bytes), not YAML"]


def test_random_bytes_without_nul(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = bytes((i * 131 + 7) % 255 + 1 for i in range(4096))  # no NUL, not UTF-8
    fleet = fleet_with(tmp_path, "junk.yaml", junk)
    code, err = validate(fleet, capsys)
    assert code == 1
    assert len(err) == 2
    assert err[0].startswith(f"{fleet}/junk.yaml:")
    assert err[0].endswith("not UTF-8 text; fleet files must be UTF-8 YAML")


def test_latin1_file_points_at_the_first_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: zurich}\nspec:\n" \
           "  environment: onprem\n  jurisdiction: Z\u00fcrich\n"
    fleet = fleet_with(tmp_path, "zurich.yaml", text.encode("latin-1"))
    code, err = validate(fleet, capsys)
    assert code == 1
    assert err[:-1] == [f"{fleet}/zurich.yaml:6: not UTF-8 text; fleet files must be UTF-8 YAML"]


def test_a_device_or_fifo_named_as_the_fleet_is_refused_unread(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Both were taken for directories ("cannot read directory: Not a directory"); policy test reads through here too."""
    os.mkfifo(tmp_path / "fifo.yaml")
    for path, what in ((Path("/dev/null"), "a character device"), (tmp_path / "fifo.yaml", "a named pipe (FIFO)")):
        code, err = validate(path, capsys)
        assert code == 1
        assert err[0] == f"{path}:1: not a regular file ({what}): name a YAML file", err


def test_utf16_file_is_reported_as_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: dc2}\nspec: {environment: edge}\n"
    fleet = fleet_with(tmp_path, "utf16.yaml", text.encode("utf-16"))
    code, err = validate(fleet, capsys)
    assert code == 1
    assert len(err) == 2 and "not UTF-8" in err[0], err


def test_utf8_bom_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: dc2}\nspec: {environment: edge}\n"
    fleet = fleet_with(tmp_path, "bom.yaml", text.encode("utf-8-sig"))
    code, err = validate(fleet, capsys)
    assert code == 0, err


def test_control_character_is_a_located_error() -> None:
    docs, diags = parse_text("a: 1\nb: \x07\n", "ctl.yaml")
    assert docs == []
    assert len(diags) == 1
    assert diags[0].line == 2
    assert "\n" not in diags[0].message


def test_a_file_named_with_a_line_break_or_an_escape_code_is_refused_on_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fleet file's name is printed in each of its diagnostics: a name with a line break forged a
    diagnostic line in the validate check of a pull request, an escape code reached the terminal,
    and a fleet with such a file was read (and planned) as any other."""
    name = "m.yaml:3: ok\nbase.yaml:1: all good\x1b[2J.yaml"
    fleet = fleet_with(tmp_path, name, BASE.read_text().replace("kind: Model", "kind: Modell", 1))
    capsys.readouterr()
    assert main(["validate", str(fleet)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and len(err.splitlines()) == 2, err
    assert err.splitlines()[0] == (f"{str(fleet / name)!r}:1: this file name holds a control character: rename it; "
                                   "it was not read"), err
    # a policy test file so named, whose path every PASS and FAIL line of its cases printed as it was
    tests = tmp_path / "tests"
    tests.mkdir()
    odd = tests / "ok.test.yaml\nFAIL  x\x1b[2J.test.yaml"
    odd.write_text("kind: PolicyTest\n")
    assert main(["policy", "test", str(tests)]) == 1
    said = capsys.readouterr()
    assert "\x1b" not in said.out + said.err and "FAIL" not in said.out, said
    assert said.err.startswith(f"ERROR {str(odd)!r}:1: this path holds "
                               "a control character: rename it; it was not read"), said.err


def test_a_diagnostic_prints_the_control_characters_it_refuses_quoted(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The diagnostic that refused a name's or a key's escape code printed the name and the key as
    they were: the code it warned "would reach terminals" reached the terminal, and a line break
    in them forged a diagnostic line."""
    text = BASE.read_text()
    name = re.search(r"kind: Model\nmetadata:\n  name: (\S+)", text)
    assert name is not None
    fleet = fleet_with(tmp_path, "extra.yaml", text[name.start():].split("\n---")[0].replace(
        f"name: {name.group(1)}", 'name: "m\\e[31m\\nfleet/x.yaml:1: fine"', 1).replace(
        "spec:\n", 'spec:\n  "ke\\e[32my\\nz": 1\n', 1))
    capsys.readouterr()
    assert main(["validate", str(fleet)]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\x1b" not in err and not any(line.startswith("fleet/x.yaml") for line in lines), err
    assert any("/extra.yaml:" in line and "Model/'m\\x1b[31m\\nfleet/x.yaml:1: fine'" in line
               and "'spec.ke\\x1b[32my\\nz': contains the control character" in line for line in lines), err


def test_python_tags_never_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    docs, diags = parse_text(f'a: !!python/object/apply:os.system ["touch {marker}"]\n'
                             f'b: !!python/name:os.system ""\n', "evil.yaml")
    assert not marker.exists()
    assert docs == []
    assert len(diags) == 1 and diags[0].message.startswith("invalid YAML: could not determine a constructor")


# ---------------------------------------------------------------- directories and links


def test_directory_without_yaml_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "README.md").write_text("# not a fleet\n")
    (tmp_path / "pools.yaml.bak").write_text("kind: Pool\n")
    (tmp_path / ".hidden.yaml").write_text("kind: Pool\n")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "notes.txt").write_text("x\n")
    code, err = validate(tmp_path, capsys)
    assert code == 1
    assert err == [f"{tmp_path}:0: no *.yaml or *.yml files in this directory: nothing to plan",
                   "1 error in the fleet; nothing was planned or changed."]


@pytest.mark.parametrize("content", ["", "# apiVersion: placer.dev/v1alpha1\n# kind: Location\n", "---\n---\n"])
def test_files_without_documents_are_nothing_to_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     content: str) -> None:
    """An empty or commented-out file was a valid fleet of nothing, and its plan deleted
    everything the state recorded; a directory without YAML files was refused."""
    fleet = tmp_path / "fleet"
    (fleet / "sub").mkdir(parents=True)
    (fleet / "a.yaml").write_text(content)
    (fleet / "sub" / "b.yml").write_text("# nothing here yet\n")
    code, err = validate(fleet, capsys)
    assert code == 1
    assert err == [f"{fleet}:0: the YAML files in this directory hold no documents (empty, or only comments): "
                   "nothing to plan", "1 error in the fleet; nothing was planned or changed."]
    code, err = validate(fleet / "a.yaml", capsys)
    assert code == 1
    assert err[0] == f"{fleet / 'a.yaml'}:0: this file holds no documents (empty, or only comments): nothing to plan"
    code = main(["plan", str(fleet), "--state", str(tmp_path / "state.json"), "-o", str(tmp_path / "plan.json")])
    assert code == 1 and not (tmp_path / "plan.json").exists()


def test_an_empty_file_beside_documents_is_no_error(tmp_path: Path) -> None:
    fleet = fleet_with(tmp_path, "empty.yaml", "")
    docs, diags = read_fleet_dir(fleet)
    assert diags == [] and len(docs) == 6


def test_directory_symlink_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = fleet_with(tmp_path, "extra.yaml", "# nothing\n")
    (fleet / "sub").mkdir()
    os.symlink("..", fleet / "sub" / "loop")
    started = time.perf_counter()
    code, err = validate(fleet, capsys)
    assert time.perf_counter() - started < 5.0
    assert code == 1
    assert err == [f"{fleet}/sub/loop:1: symbolic link loop: this directory was already read",
                   "1 error in the fleet; nothing was planned or changed."]


def test_file_symlink_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = fleet_with(tmp_path, "extra.yaml", "# nothing\n")
    os.symlink("b.yaml", fleet / "a.yaml")
    os.symlink("a.yaml", fleet / "b.yaml")
    code, err = validate(fleet, capsys)
    assert code == 1
    assert err == [f"{fleet}/a.yaml:1: broken or looping symbolic link",
                   f"{fleet}/b.yaml:1: broken or looping symbolic link",
                   "2 errors in the fleet; nothing was planned or changed."]


def test_link_to_a_device_or_a_fifo_is_not_read_and_said_skipped(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """/dev/zero would never end, a FIFO waits for a writer: a fleet file must be a regular file. Both
    were skipped without a word, and a fleet of only a FIFO was 'valid (0 locations, ...)'."""
    fleet = fleet_with(tmp_path, "extra.yaml", "# nothing\n")
    os.symlink("/dev/zero", fleet / "zero.yaml")
    os.mkfifo(fleet / "pipe.yml")
    code, err = validate(fleet, capsys)
    assert code == 0
    assert err == [f"{fleet}/{name}:1: warning: skipped: {what}, not a regular file, so not read; remove it or "
                   "rename it without .yaml to drop this note"
                   for name, what in (("pipe.yml", "a named pipe (FIFO)"), ("zero.yaml", "a character device"))], err
    only = tmp_path / "only"
    only.mkdir()
    os.mkfifo(only / "pipe.yaml")
    code, err = validate(only, capsys)
    assert code == 1 and err[0] == f"{only}:0: no *.yaml or *.yml files in this directory but those skipped " \
        "below: nothing to plan", err


def test_link_to_a_directory_outside_is_followed(tmp_path: Path) -> None:
    outside = tmp_path / "shared"
    outside.mkdir()
    (outside / "base.yaml").write_bytes(BASE.read_bytes())
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    os.symlink(outside, fleet / "shared")
    docs, diags = read_fleet_dir(fleet)
    assert diags == []
    assert len(docs) == 6


@pytest.mark.parametrize(("field", "value", "where"), [
    ("rate", 1.7e308, "Model/m: spec.demand[0].rate"),  # the plan's objective was Infinity, its file no JSON
    ("usd", 1e100, "Pool/p: spec.usdPerGpuHour"),  # the solver "found no placement within 30 s"
    ("count", 10**18, "Pool/p: spec.nodes.count"),
])
def test_numbers_beyond_any_fleet_are_refused_where_they_are(field: str, value: float, where: str,
                                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from tests.fleetkit import inference, location, pool

    docs = [location("a"), pool("p", "a", **({"usd": value} if field == "usd" else {}),
                                **({"count": value} if field == "count" else {})),
            inference("m", [{"location": "a", "rate": value if field == "rate" else 100}])]
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    assert main(["plan", str(tmp_path)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"{where}: must be at most" in err and "no fleet needs more" in err, err
    assert "Traceback" not in err and "internal error" not in err


def test_a_value_of_thousands_of_characters_is_not_echoed_whole(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A name, a kind or a number 100,000 characters long was echoed whole: one diagnostic of 100 KB,
    its own words (what to fix) lost in it; and 100,000 digits were 'Input should be a valid number'."""
    text = BASE.read_text()
    (tmp_path / "base.yaml").write_text(text)
    head = "apiVersion: placer.dev/v1alpha1\n"
    (tmp_path / "long.yaml").write_text(
        f"{head}kind: Location\nmetadata: {{name: {'x' * 5000}}}\nspec: {{environment: onprem}}\n---\n"
        f"{head}kind: {'K' * 5000}\nmetadata: {{name: k}}\nspec: {{}}\n---\n"
        f"{head}kind: Location\nmetadata: {{name: n}}\nspec: {{environment: onprem, localLatencyMs: {'9' * 100_000}}}\n")
    code, err = validate(tmp_path, capsys)
    assert code == 1
    # a message is cut at MOST_MESSAGE (600) characters, the path and names before it at 100 each
    assert len(err) == 4 and all(len(line) < 900 for line in err), [line[:200] for line in err]
    assert f"{tmp_path}/long.yaml:3: Location/" in err[0] and "is not a DNS-1123 label" in err[0], err[0]
    assert "characters)..." in err[0] and "at most 63 characters)" in err[0], err[0]
    assert "kind: unknown kind 'KKK" in err[1] and err[1].endswith("Policy, Settings"), err[1]
    assert err[2] == (f"{tmp_path}/long.yaml:14: Location/n: spec.localLatencyMs: a number of 100,000 digits, too many "
                      "to read; no fleet needs more than 1e12"), err[2]
