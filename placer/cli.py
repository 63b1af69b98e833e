"""The command line: parses arguments, calls the library, maps errors to exit codes.

Exit codes (SPEC section 4): 0 ok, 1 error (usage errors too), 2 changes present with
``plan --detailed-exitcode``. Errors are one readable line on stderr; ``--debug`` adds
the traceback. Cloud SDKs are imported only by the commands that use them.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import errno
import io
import json
import os
import re
import shlex
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click
from rich.console import Console

from placer import __version__
from placer.interrupts import from_interrupt, interrupted, sigterm_interrupts
from placer.knobs import KnobError, env_number
from placer.words import names

# Each command imports what it uses: `placer --help` loaded the fleet's pydantic models and networkx
# (0.5 s of its 0.9 s), `validate` OR-Tools, `plan` scipy.optimize. tests/test_cli_imports.py holds it.
if TYPE_CHECKING:
    from placer.apply import Applier, ApplyReport
    from placer.explain import Explanation
    from placer.fleet import Fleet
    from placer.planfile import Plan
    from placer.retry import Retrier
    from placer.spec.diagnostics import Diagnostic, FleetError

LOG_WIDTH = 200  # a table's width where output is a log or a pipe, not a terminal
MIN_WIDTH = 20  # the narrowest COLUMNS a table is laid out in; a narrower one is taken as none


class _StderrConsole(Console):
    """stderr's console: where its reader went away (`placer plan F 2>&1 >summary.txt | head -1`),
    it goes quiet. Rich's answer to a broken pipe put /dev/null over stdout, from the progress
    thread too: the summary redirected to a file was lost, and the command exited 0."""

    def on_broken_pipe(self) -> None:
        self.quiet = True


def stdout_gone() -> None:
    """stdout's reader went away (`placer plan F --detailed-exitcode | head -1`): what is left to print
    goes to /dev/null, and the command runs on to its own exit status. Rich's answer to the broken
    pipe, and click's, was exit 1: a plan with changes (2) said as an error, its file written."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # no file behind it (a test's capture): nothing is left to flush there
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def stdout_failed(exc: OSError) -> NoReturn:
    """A write to stdout that failed otherwise (a full disk, ``> /dev/full``): said as the output's,
    where it goes, and what to do. It was 'Error: [Errno 28] No space left on device', from any command."""
    from placer.state import said

    where = ""
    try:
        target = os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}")
        where = f" ({said(target)})" if target.startswith("/") else ""
    except (OSError, ValueError, AttributeError):  # no /proc, or no file behind stdout: "stdout" alone
        pass
    stdout_gone()  # what is left in its buffer goes nowhere at exit, not to a second error (exit 120)
    raise CliError(f"cannot write the output to stdout{where}: {exc.strerror or exc}; the output is cut short: "
                   "make room there, or send it elsewhere (> FILE on another disk)") from exc


class _StdoutConsole(Console):
    """stdout's console: where its reader went away, it goes quiet (``stdout_gone``); where a write
    fails otherwise, the command fails saying so (``stdout_failed``)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        stdout_gone()

    def _check_buffer(self) -> None:
        try:
            super()._check_buffer()  # a broken pipe is rich's to take (on_broken_pipe above)
        except OSError as exc:
            del self._buffer[:]  # not written again by the error's printing, nor at exit
            stdout_failed(exc)


def echo(text: str, nl: bool = True) -> None:
    """``click.echo`` to stdout, which a reader that went away does not end (``stdout_gone``), and
    whose other write failures say what and where (``stdout_failed``)."""
    try:
        click.echo(text, nl=nl)
    except BrokenPipeError:
        stdout_gone()
    except OSError as exc:
        stdout_failed(exc)


def _console(stderr: bool = False) -> Console:
    """Markup and emoji off: names and messages from users' files are printed as they are. Into a
    log or a pipe (no terminal, no COLUMNS), tables are as wide as their rows up to LOG_WIDTH:
    at rich's 80 columns a 63-character pool name was folded over two lines, and `placer plan F |
    grep POOL` missed its row. A COLUMNS under MIN_WIDTH is no width: at COLUMNS=0 (a shell that
    read a terminal of 0 columns) nothing was printed, errors neither, and at 5 tables of empty cells."""
    env = dict(os.environ)
    if not env.get("COLUMNS", "").isdigit() or int(env["COLUMNS"]) < MIN_WIDTH:
        env.pop("COLUMNS", None)
    console = (_StderrConsole if stderr else _StdoutConsole)(stderr=stderr, highlight=False, soft_wrap=True, markup=False,
                                                      emoji=False, _environ=env)
    if not console.is_terminal and "COLUMNS" not in env:
        console.width = LOG_WIDTH
    return console


err = _console(stderr=True)
out = _console()


class CliError(Exception):
    """An error already phrased for the user."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


# ---------------------------------------------------------------- wiring


def rules_for(now: dt.datetime) -> Any:
    from policies import build_rules

    return build_rules(now)


def parse_now(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    from placer.policy import plan_time

    try:
        return plan_time(value)
    except ValueError as exc:
        fail(f"--now {value!r} {exc}")


def read_fleet(path: str, progress: Callable[[str], None] | None = None) -> Fleet:
    from placer.fleet import load_fleet

    fleet = load_fleet(path, progress)
    print_warnings(fleet.warnings)
    return fleet


def print_warnings(warnings: Iterable[Diagnostic]) -> None:
    """A valid fleet's warnings as its errors are printed: a file's first MOST_PER_FILE, then how many
    more (200 policies with an ignored selector printed 200 warnings, the fleet's summary scrolled away)."""
    from placer.spec.diagnostics import capped_per_file, sort_diagnostics

    for warning in capped_per_file(sort_diagnostics(warnings)):
        err.print(str(warning), style="yellow")


def deploy_outside(fleet_path: str, loaded: Fleet) -> None:
    """A gitops apply.directory the fleet's own loader would read: the manifests placer writes
    there made the next plan fail on `unknown kind 'Deployment'` (the default, `deploy`, is inside
    the fleet when placer runs from the fleet's directory)."""
    apply_cfg = loaded.settings.apply
    if apply_cfg.mode != "gitops":
        return
    root, out_dir = Path(fleet_path).resolve(), Path(apply_cfg.directory).resolve()
    if not root.is_dir() or not out_dir.is_relative_to(root):
        return
    inside = out_dir.relative_to(root)
    if any(part.startswith(".") for part in inside.parts):
        return  # the loader skips hidden folders
    fail(f"Settings apply.directory {apply_cfg.directory!r} is {out_dir}, inside the fleet {root}: the next plan "
         "would read the manifests placer writes there as fleet documents; set apply.directory outside the fleet "
         "(a relative one is from where placer runs), e.g. ../deploy")


def out_refusal(out_path: str, fleet_path: str | None, backend: Any, flag: str = "-o", what: str = "the plan",
                elsewhere: str = "save the plan elsewhere, e.g. -o plan.json",
                outside: str = "save it outside the fleet, or as a .json file") -> None:
    """A file a command writes (``flag``, ``what`` it holds) is not written over the local state, nor
    where the fleet's loader reads: `-o STATE` replaced the state with the plan (its lineage, serial
    and record lost, every later command refusing it as damaged), and `-o F/settings.yaml` a fleet
    file. ``elsewhere`` and ``outside`` say where to write it instead."""
    from placer.spec.source import YAML_SUFFIXES
    from placer.state import LocalBackend

    target = Path(out_path).resolve()
    if isinstance(backend, LocalBackend):
        own = {backend.path: "the state file", backend.lock_path: "the state's lock file",
               backend.journal_path: "the state's journal"}
        for path, which in own.items():
            if path.resolve() == target:
                fail(f"{flag} {out_path} is {which} {path}: writing {what} there would replace it (the state's "
                     f"lineage, serial and what runs where); {elsewhere}")
    if fleet_path is None:
        return
    root = Path(fleet_path).resolve()
    if target == root:  # a fleet of one YAML file
        fail(f"{flag} {out_path} is the fleet's own file: {what} would replace it; {elsewhere}")
    if root.is_dir() and target.is_relative_to(root) and target.name.endswith(YAML_SUFFIXES) \
            and not any(part.startswith(".") for part in target.relative_to(root).parts):
        fail(f"{flag} {out_path} is a YAML file inside the fleet {root}: {what} would replace or join the fleet's "
             f"documents, which the next plan reads; {outside}")


class MetricsRefused(CliError):
    """A --metrics-file that names a file the command reads or writes itself: refused before its work,
    and not written by an apply's failure either."""


METRICS_ELSEWHERE = "write the metrics elsewhere, e.g. --metrics-file /var/lib/node_exporter/placer.prom"


def metrics_refusal(metrics_file: str | None, backend: Any, fleet_path: str | None = None,
                    others: Mapping[str, str | None] | None = None) -> None:
    """Refuse a --metrics-file that is the local state (its lock, its journal), the fleet's own file
    or a YAML file in it, or a file the command takes or writes (``others``: what it is -> its path):
    `plan --metrics-file STATE` replaced the state with the metrics, every later command then refusing
    it as damaged, `plan -o P --metrics-file P` the plan just saved, `apply P --metrics-file P` the plan
    it applied. Said before the command's work, as ``-o``'s refusals are."""
    if metrics_file is None:
        return
    try:
        out_refusal(metrics_file, fleet_path, backend, "--metrics-file", "the metrics", METRICS_ELSEWHERE,
                    "write them outside the fleet, to a file named *.prom")
        target = Path(metrics_file).resolve()
        for role, path in (others or {}).items():
            if path is not None and Path(path).resolve() == target:
                fail(f"--metrics-file {metrics_file} is {role} ({path}): the metrics would replace it; "
                     f"{METRICS_ELSEWHERE}")
    except CliError as exc:
        raise MetricsRefused(f"{exc}; nothing was done") from None


def retry_base_seconds() -> float:
    """The first wait before a provider's or S3's call is tried again, ``PLACER_RETRY_BASE_SECONDS``."""
    return env_number("PLACER_RETRY_BASE_SECONDS", 0.5)


def provider_retrier(then: str) -> Retrier:
    """Provider reads outside an apply (discovery's, refresh's) tried again after throttling, a 5xx
    or a timeout, as an apply tries its calls (its policy; ``PLACER_RETRY_BASE_SECONDS`` the first
    wait), each wait said on stderr; once the tries are spent, ``then`` says what to do."""
    from placer.retry import Retrier, RetryPolicy

    return Retrier(RetryPolicy(base_seconds=retry_base_seconds()), then=then,
                   progress=lambda line: err.print(line, style="yellow", markup=False))


def backend_from(state_cfg: dict[str, Any], override: str | None,
                 progress: Callable[[str], None] | None = None) -> Any:
    """The state backend Settings name; ``progress`` is told when the s3 one waits to try a call again."""
    from placer.spec.kinds import state_url
    from placer.state import LocalBackend

    if override:
        url = state_url(override)
        if url:  # it was the file s3:/b/k here: none, and plan planned as if nothing had been applied
            fail(f"--state {override} is {url[0]}, and --state takes a local state file only: {url[1]}, and drop "
                 "--state")
        return LocalBackend(override)
    if state_cfg.get("backend", "local") == "s3":
        from placer.state_s3 import S3Backend

        return S3Backend(bucket=state_cfg["bucket"], key=state_cfg["key"], region=state_cfg.get("region"),
                         endpoint_url=state_cfg.get("endpointUrl"),
                         retry_base_s=retry_base_seconds(), progress=progress)
    return LocalBackend(state_cfg.get("path", ".placer/state.json"))


def settings_json(fleet: Fleet, state_path: str | None = None) -> dict[str, Any]:
    """The settings a plan carries to apply. ``state_path``: the local state file `--state` named,
    which the plan was made against, so that `placer apply PLAN` records there (it carried the
    Settings' state, and an apply of a plan made with --state recorded into another file). A relative
    one is made absolute, from where plan runs, as it was typed: carried as typed, an apply run from
    another directory recorded into a new state there."""
    s = fleet.settings
    return {
        "state": ({"backend": "local", "path": str(Path(state_path).absolute())} if state_path
                  else s.state.model_dump(mode="json", by_alias=True, exclude_none=True)),
        "apply": s.apply.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


STILL_EVERY = 10.0  # seconds between "Still planning…" lines where stderr is no terminal (CI logs)
SPINNER_TICK = 1.0  # seconds between updates of a terminal spinner's elapsed time


def _command_started() -> float:
    """When the running command started (``cli``'s callback noted it), so that progress counts
    from there; now, outside a command."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return float(obj["started"]) if isinstance(obj, dict) and "started" in obj else time.monotonic()


@contextmanager
def spinner(doing: str = "planning") -> Iterator[Callable[[str], None]]:
    """Progress on a long command, told each step as it begins (reading the fleet, "reading fleet:
    12 of 51 files", to the solver's steps): a spinner with the current step and the seconds since the
    command started ("the LP by column generation [12s elapsed]") on a terminal; in a
    CI log or on a TERM=dumb terminal (``_live``), a line every STILL_EVERY seconds of the command ("Still planning… [10s elapsed; now:
    reading fleet: 12 of 51 files]", as Terraform's "Still creating... [10s elapsed]"), so that a
    two-minute plan does not look hung. Commands open it first: it was opened after the fleet was
    read (8 s at L), so that nothing showed for that long, and the clock started late. ``--json``
    shows it too, on stderr, stdout holding the JSON alone (printed once this is closed): it showed
    none, and `plan --json > plan.json` was a bench L plan's 30 s of silence in a CI log."""
    latest = ["starting"]
    done = threading.Event()
    started = _command_started()
    if _live():  # the step and the time so far: a spinner alone said nothing of a plan's 30 s at L, 2 min at XL
        latest[0] = f"{doing}…"
        with err.status(latest[0]) as status:

            def show(step: str | None = None) -> None:
                if step is not None:
                    latest[0] = step
                status.update(f"{latest[0]} [{time.monotonic() - started:.0f}s elapsed]")

            def every_second() -> None:
                while not done.wait(SPINNER_TICK):
                    show()

            ticker = threading.Thread(target=every_second, name="placer-spinner", daemon=True)
            ticker.start()
            try:
                yield show
            finally:
                done.set()
                ticker.join()
        return

    def tick() -> None:  # on the command's 10 s marks
        while not done.wait(STILL_EVERY - (time.monotonic() - started) % STILL_EVERY):
            err.print(f"Still {doing}… [{time.monotonic() - started:.0f}s elapsed; now: {latest[0]}]")

    ticker = threading.Thread(target=tick, name="placer-progress", daemon=True)
    ticker.start()
    try:
        yield lambda msg: latest.__setitem__(0, msg)
    finally:
        done.set()
        ticker.join()


class _Bar:
    """A rich progress bar over an apply's changes (terminals only, ``_live``; CI gets plain lines)."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description:<60}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=err, transient=False)
        self.task = self.progress.add_task("applying", total=total)


def _live() -> bool:
    """Whether stderr is a terminal that draws a spinner or a bar: TERM=dumb (Emacs' shell, an IDE's
    console) draws neither, and got nothing at all, where a CI log gets a line every STILL_EVERY s."""
    return err.is_terminal and not err.is_dumb_terminal


def _progress_bar(total: int) -> _Bar | None:
    return _Bar(total) if _live() and total else None


def providers_for(apply_cfg: dict[str, Any], directory_override: str | None = None,
                  plan: Plan | None = None) -> list[Any]:
    """``plan``: the plan an apply carries out (the gitops tfvars name it, as render's do)."""
    if (apply_cfg.get("mode") or "live") == "gitops" or directory_override:
        from placer.render.tree import tfvars_pools
        from providers.gitops import GitOpsProvider

        info = None if plan is None else {"fleet_digest": plan.fleet_digest, "serial": plan.prior_serial}
        # what a tfvars missing from the tree is written with: the pools the plan sizes, less those it changes
        changed = {c.pool for c in plan.changes if c.kind == "pool"} if plan is not None else set()
        unchanged = {name: entry for name, entry in tfvars_pools(plan.body.get("pools", [])).items()
                     if name not in changed} if plan is not None else None
        return [GitOpsProvider(directory_override or apply_cfg.get("directory", "deploy"), info, unchanged)]
    live: list[Any] = []
    from providers.aws import AwsProvider
    from providers.gcp import GcpProvider
    from providers.kubernetes import KubernetesProvider

    # Credentials and endpoints come from the usual places: AWS_PROFILE / AWS_ENDPOINT_URL, KUBECONFIG,
    # Google application default credentials; PLACER_GCP_API_ENDPOINT points at an alternative Compute API.
    # AWS: one try per call, read within 10 s: the apply engine retries, with backoff, Retry-After and a
    # progress line each time (botocore's 3 tries of 20 s inside its 6 held a hung endpoint 377 s, silent
    # for a minute at a time), as the Kubernetes and GCP providers leave it to
    live += [AwsProvider(max_attempts=1, read_timeout_s=10.0),
             GcpProvider(api_endpoint=os.environ.get("PLACER_GCP_API_ENDPOINT")),
             KubernetesProvider(kubeconfig=os.environ.get("KUBECONFIG"))]
    return live


class NamedPath(click.Path):
    """A path that names something: an empty one is refused (`plan -o ''` saved no plan and said
    nothing, and '' is the current directory to the rest)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            self.fail("is empty; give a file or directory path", param, ctx)
        return super().convert(value, param, ctx)

    def fail(self, message: str, param: click.Parameter | None = None, ctx: click.Context | None = None) -> NoReturn:
        # click's "Path 'p.json' is not readable." said what, not what to do
        if message.endswith(" is not readable."):
            message = (f"{message[:-1]}: this user may not read it; make it readable (`chmod u+r` a file, "
                       "`chmod u+rx` a folder) or run placer as a user who may")
        super().fail(message, param, ctx)


# ---------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="placer")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """placer: plan and apply GPU model placements over on-prem, cloud and edge pools."""
    ctx.obj = {"debug": debug, "started": time.monotonic()}


@cli.command()
@click.argument("fleet", type=NamedPath())
def validate(fleet: str) -> None:
    """Check every document of FLEET; print each problem as path:line: Kind/name: field: message."""
    from placer.fleet import load_fleet
    from placer.optimizer.arrays import build_arrays, fleet_warnings
    from placer.optimizer.conflicts import budget_conflicts, capacity_conflicts
    from placer.optimizer.crowded import crowded_spreads
    from placer.optimizer.shared import shared_conflicts
    from placer.optimizer.slots import slot_conflicts
    from placer.spec import FleetError
    from providers.aws_regions import region_problems

    with spinner("validating") as progress:
        # an AWS region botocore does not list (us-east-9) passed validate and plan; apply failed at AWS
        loaded = load_fleet(fleet, progress, region_problems)
        rules = rules_for(dt.datetime.now(dt.UTC))
        progress("checking which pools each model may use")
        arrays = build_arrays(loaded, rules)
        found = list(loaded.warnings) + fleet_warnings(loaded, rules, arrays)
        # a required spread that other models' minReplicas push onto spot pools (plan alone refuses the
        # fleet where a spot share forbids that: the check proves it, and warns)
        progress("checking each required spread against the pools other models' minReplicas take")
        found += [doc.diag("spec.minReplicas", crowd.warning(), "spec", "minReplicas", severity="warning")
                  for crowd in crowded_spreads(loaded, rules, arrays)
                  if (doc := loaded.document("Model", crowd.model)) is not None]
        # a minReplicas no allowed pool can hold: `plan` refuses the fleet, so validate does (a PR
        # check passed, then the plan failed)
        progress("checking each model's minReplicas against the pools it may use")
        alone = list(capacity_conflicts(loaded, rules))
        short = [doc.diag("spec.minReplicas", conflict.message(), "spec", "minReplicas")
                 for conflict in alone if (doc := loaded.document("Model", conflict.models[0])) is not None]
        # minReplicas that each fit alone and not together, on the pools the models share: each
        # model's minReplicas line says so
        progress("checking the minReplicas of models that share pools")
        # (a required spread or maxSpotFraction's cap on each model's share of some of its pools too)
        crowded = shared_conflicts(loaded, rules, arrays, {c.models[0] for c in alone})
        short += [doc.diag("spec.minReplicas", conflict.message(), "spec", "minReplicas")
                  for conflict in crowded
                  for model in conflict.models if (doc := loaded.document("Model", model)) is not None]
        # a required maxModelsPerPool whose pools cannot host the models whose minReplicas must go there
        progress("checking each required maxModelsPerPool against the minReplicas of its models")
        short += [doc.diag("spec.rule.maxModelsPerPool", conflict.message(), "spec", "rule", "maxModelsPerPool")
                  for conflict in slot_conflicts(loaded, rules, arrays,
                                                 {m for c in [*alone, *crowded] for m in c.models})
                  if (doc := loaded.document("Policy", conflict.policies[0])) is not None]
        # and a required budget they cannot be paid for within, at its maxUsdPerHour
        progress("checking each required budget against the minReplicas of its models")
        short += [doc.diag("spec.rule.budget.maxUsdPerHour", conflict.message(), "spec", "rule", "budget",
                           "maxUsdPerHour")
                  for conflict in budget_conflicts(loaded, rules)
                  if (doc := loaded.document("Policy", conflict.policies[0])) is not None]
    if short:
        raise FleetError([*found, *short])
    print_warnings(found)
    counts = ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in (
        (len(loaded.locations), "location", "locations"), (len(loaded.pools), "pool", "pools"),
        (len(loaded.models), "model", "models"), (len(loaded.policies), "policy", "policies")))
    out.print(f"{fleet}: valid ({counts}" + (f", {len(found)} warning(s))" if found else ")"))


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the fleet format (for editors: yaml-language-server)."""
    from placer.schema import fleet_schema

    echo(json.dumps(fleet_schema(), indent=2))


FULL_SEARCH_HELP = ("Search the whole fleet in all of solver.timeLimitSeconds, its moves priced as churn, where what "
                    "runs would make this a short re-plan around it (large fleets: a small fleet's plan always searches "
                    "the whole fleet).")


METRICS_HELP = ("Write Prometheus metrics of the run here (text exposition format, replaced atomically), "
                "for node_exporter's textfile collector; name it *.prom.")


METRICS_MAX_PAIRS_HELP = ("The most (model, pool) pairs --metrics-file gives a placer_plan_replicas series each (default "
                          "10000; 0: no most): a plan that places replicas on more leaves the family out, and "
                          "placer_plan_replica_series_left_out says so.")


METRICS_LABEL_HELP = ("A label every series of --metrics-file carries, NAME=VALUE (repeatable), e.g. fleet=prod: the "
                      "files of several fleets on one node_exporter must differ in one.")
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def metrics_options(apply_help: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--metrics-file and --metrics-label, as plan, apply, whatif and refresh take them."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--metrics-label", "metrics_labels", multiple=True, metavar="NAME=VALUE",
                               help=METRICS_LABEL_HELP)(command)
        return click.option("--metrics-file", type=NamedPath(), help=METRICS_HELP + apply_help)(command)
    return decorate


def metrics_labels_of(path: str | None, given: Sequence[str]) -> dict[str, str]:
    """The labels --metrics-label gives (NAME=VALUE each), refused before the command's work where one
    is no label Prometheus takes, or one of placer's own, or given twice, or without --metrics-file."""
    if not given:
        return {}
    from placer.render.metrics import OWN_LABELS

    if path is None:
        fail(f"--metrics-label {given[0]} labels the series of --metrics-file: give --metrics-file PATH.prom too")
    labels: dict[str, str] = {}
    for each in given:
        name, is_, value = each.partition("=")
        why = ("give NAME=VALUE, e.g. --metrics-label fleet=prod" if not is_ else
               "a label name is letters, digits and underscores, not starting with a digit (e.g. fleet)"
               if not LABEL_NAME.fullmatch(name) else
               "names starting with __ are Prometheus' own" if name.startswith("__") else
               f"{name} is a label of placer's own series ({', '.join(OWN_LABELS)}): choose another name"
               if name in OWN_LABELS else
               f"{name} is given twice" if name in labels else
               "an empty value is no label to Prometheus: give one" if not value else
               "its value is not UTF-8, which Prometheus' text format requires" if not _utf8(value) else "")
        if why:
            fail(f"--metrics-label {each!r}: {why}; nothing was done")
        labels[name] = value
    return labels


def _utf8(text: str) -> bool:
    """Whether ``text`` (an argument: bytes not UTF-8 come as surrogates) is UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


METRICS_FAMILY = re.compile(r"^# TYPE placer_([a-z]+)_", re.MULTILINE)


def metrics_target(path: str | None, command: str) -> None:
    """Refuse, before the command's work, a metrics file that cannot be written (as ``plan -o``
    does a plan file), and warn of a name node_exporter's textfile collector does not read, and of a
    file another ``command`` wrote (cron's plan and apply given one path: each run replaced the
    other's series, so that the plan's alerts saw them vanish after every apply)."""
    if path is None:
        return
    from placer.planfile import check_writable

    try:
        check_writable(path)
    except OSError as exc:
        raise CliError(f"--metrics-file: {exc}; nothing was done") from exc
    if not path.endswith(".prom"):
        err.print(f"warning: --metrics-file {path}: node_exporter's textfile collector reads only files named "
                  "*.prom; name it so if that collector is to read it", style="yellow")
    others = sorted(set(METRICS_FAMILY.findall(_metrics_text(path) or "")) - {command})
    if others:
        theirs = ", ".join(f"`placer {other}`" for other in others)
        err.print(f"warning: --metrics-file {path} holds {theirs}'s metrics, which this {command}'s replace, so their "
                  f"series vanish until {'it runs' if len(others) == 1 else 'they run'} again: give each command its "
                  f"own file, e.g. {command}.prom", style="yellow")


def _metrics_text(path: str) -> str | None:
    """The text of the metrics file at ``path``, or None: none yet, one this user cannot read, or one
    that is no regular file (a FIFO, which check_writable lets a command write into: opening it to read
    waited for a writer that never came, the command hung before its work, or an apply after its)."""
    try:
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def write_metrics(path: str, text: str) -> None:
    """Write a metrics file as placer writes its plan files: a temporary file beside it, fsynced and
    renamed over it, keeping the file's mode (``prometheus_client.write_to_textfile`` neither syncs
    nor keeps the mode, and leaves its temporary file behind when interrupted)."""
    from placer.planfile import atomic_write

    atomic_write(path, text)


def failed_write(write: Callable[[], object]) -> OSError | None:
    """``write()`` (a file the command writes beside its output: -o PLAN, --metrics-file), and the
    OSError it failed with, to be said once the output is printed (a write failing first withheld it:
    `plan --json` without -o lost its plan with the metrics file), or None."""
    try:
        write()
    except OSError as exc:
        return exc
    return None


def write_metrics_or_warn(path: str, text: str) -> None:
    """A metrics file beside a command that fails anyway: a write that fails too is a warning, the
    command's own error being the one it exits with."""
    unwritten = failed_write(lambda: write_metrics(path, text))
    if unwritten is not None:
        err.print(f"warning: writing --metrics-file failed too: {unwritten}", style="yellow")


def metrics_unwritten(path: str, exc: OSError, done: str) -> CliError:
    """The error of a --metrics-file that failed to be written after the command's work (``done``: what
    that work left, printed or saved all the same; a plan's JSON was lost with the file): exit 1, as an
    error, since what alerts read is no longer this run's, with what to fix."""
    return CliError(f"writing --metrics-file failed: {exc}; {done}; {path} was left as it was (an earlier run's "
                    f"figures, if any, which alerts go on reading as new): {write_fix(path, exc, '--metrics-file')}, "
                    "then run the command again")


def write_fix(path: str, exc: OSError, option: str) -> str:
    """What to do of ``exc``, a write of ``path`` (given as ``option``) that failed at the end."""
    code = exc.errno or getattr(exc.__cause__, "errno", None)
    folder = os.path.dirname(os.path.abspath(path))
    return (f"give this user write access to {folder}" if code in (errno.EACCES, errno.EPERM) else
            f"free space on {folder}'s file system" if code in (errno.ENOSPC, errno.EDQUOT) else
            f"{folder} is on a read-only file system: give {option} a path elsewhere" if code == errno.EROFS else
            "fix that")


def plan_unwritten(path: str, exc: OSError, as_json: bool, existed: bool) -> str:
    """The error of a plan file (``-o``) that failed to be written after the solve; the plan, printed
    all the same, is whole but no file holds it, and one that was there (``existed``) is an earlier plan."""
    done = ("its JSON is on stdout" if as_json
            else "its summary is above, but no file holds the plan for `placer apply`")
    left = (f"{path} was left as it was: it holds an earlier plan, not this one, so do not apply it" if existed
            else "no plan file was written")
    return (f"writing the plan to -o {path} failed: {exc}; {done}; {left}: {write_fix(path, exc, '-o')}, "
            "then run the command again")


@cli.command()
@click.argument("fleet", type=NamedPath())
@click.option("-o", "--out", "out_path", type=NamedPath(), help="Write the plan file here.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan file instead of the summary.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when there are no changes, 2 when there are.")
@click.option("--now", "now_text", help="The plan's time (ISO), for reproducible plans (retire policies).")
@click.option("--state", "state_path", type=NamedPath(), help="Use this local state file instead of Settings'.")
@click.option("--refresh", is_flag=True, help="First read what really runs from the providers; report drift.")
@click.option("--full-search", is_flag=True, help=FULL_SEARCH_HELP)
@click.option("--metrics-max-pairs", type=click.IntRange(min=0), metavar="N", help=METRICS_MAX_PAIRS_HELP)
@metrics_options()
def plan(fleet: str, out_path: str | None, as_json: bool, detailed_exitcode: bool, now_text: str | None,
         state_path: str | None, refresh: bool, full_search: bool, metrics_max_pairs: int | None,
         metrics_file: str | None, metrics_labels: tuple[str, ...]) -> None:
    """Solve FLEET, diff against the state, print the summary and write the plan file."""
    with _said_unwritten(out_path):
        _plan(fleet, out_path, as_json, detailed_exitcode, now_text, state_path, refresh, full_search,
              metrics_max_pairs, metrics_file, metrics_labels)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


@contextmanager
def _said_unwritten(out_path: str | None) -> Iterator[None]:
    """A plan stopped (Ctrl-C, SIGTERM) before it wrote ``out_path`` says so, and that a file there is an
    earlier plan: "Interrupted." alone left an operator to apply yesterday's plan.json as this one."""
    before = _stat(out_path) if out_path else None
    try:
        yield
    except KeyboardInterrupt:
        after = _stat(out_path) if out_path else None
        if out_path and after is None:
            err.print(f"No plan was written to {out_path}.")
        elif out_path and before is not None and after is not None and \
                (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns):
            err.print(f"No plan was written: {out_path} is as it was, an earlier plan; do not apply it as this one.")
        raise


def _plan(fleet: str, out_path: str | None, as_json: bool, detailed_exitcode: bool, now_text: str | None,
          state_path: str | None, refresh: bool, full_search: bool, metrics_max_pairs: int | None,
          metrics_file: str | None, metrics_labels: tuple[str, ...]) -> None:
    from placer.planfile import check_writable, write
    from placer.planner import InfeasibleError, SolveError, make_plan
    from placer.render import summary

    now = parse_now(now_text)
    labels = metrics_labels_of(metrics_file, metrics_labels)
    if metrics_max_pairs is not None and metrics_file is None:
        fail(f"--metrics-max-pairs {metrics_max_pairs} caps the series of --metrics-file: give --metrics-file "
             "PATH.prom too")
    metrics_target(metrics_file, "plan")
    drifted: int | None = None
    with spinner() as progress:
        loaded = read_fleet(fleet, progress)
        deploy_outside(fleet, loaded)
        backend = backend_from(settings_json(loaded)["state"], state_path, progress)
        metrics_refusal(metrics_file, backend, fleet, {"the file -o saves the plan to": out_path})
        if out_path:  # a path no plan can be written to, or should be, is said before the solve, not after it
            out_refusal(out_path, fleet, backend)
            check_writable(out_path)
        progress(f"reading the state ({backend.location})")
        state = backend.read()
        # where force-unlock finds this state: as given, else through the fleet's Settings
        _warn_unfinished(backend, state, f"--state {shlex.quote(state_path)}" if state_path
                         else f"--fleet {shlex.quote(fleet)}")
        _warn_empty(fleet, loaded, state)
        if refresh:
            progress("refreshing: reading what runs from the providers")
            state, drifted = _refresh(loaded, state, settings_json(loaded)["apply"],
                                      f"wait a few minutes, then run `placer plan {shlex.quote(fleet)} --refresh` "
                                      "again (no plan was written)")
        try:
            result = make_plan(loaded, state, rules_for(now), now, progress, whole=full_search)
        except (InfeasibleError, SolveError) as exc:
            # the fleet has no plan: the metrics say so (the last plan's file said OPTIMAL while every run failed);
            # one placer refused (it broke a hard rule: a bug) is none either, UNKNOWN, where the file went on
            # saying the last plan's OPTIMAL
            status = "INFEASIBLE" if isinstance(exc, InfeasibleError) else exc.status or "UNKNOWN"
            if metrics_file:
                _write_no_plan_metrics(metrics_file, status, drifted, labels)
            raise
    body = dict(result.plan.body)
    body["settings"] = settings_json(loaded, state_path)
    # a refreshed plan's changes start from what runs, which apply does not hold against the state's record
    final = dataclasses.replace(result.plan, body=body, prior_refreshed=refresh)
    existed = bool(out_path) and os.path.lexists(out_path or "")
    # each said once the plan is printed: a failed -o lost it, --json's too, stdout empty
    out_unwritten = failed_write(lambda: write(final, out_path)) if out_path else None
    unwritten: OSError | None = None
    if metrics_file:
        from placer.render.metrics import fleet_facts, plan_metrics

        text = plan_metrics(final.to_json(), fleet_facts(loaded), drifted, labels, metrics_max_pairs)
        unwritten = failed_write(lambda: write_metrics(metrics_file, text))
    if as_json:
        echo(final.dumps(), nl=False)
    else:
        summary.render(final.to_json(), out)
        if out_path and out_unwritten is None:
            out.print(f"\nSaved the plan to {out_path}. Apply it with: placer apply {shlex.quote(out_path)}")
        elif not out_path and final.has_changes:  # as Terraform's plan without -out: there is no file for apply to take
            out.print(f"\nThis plan was not saved: plan it with -o PLAN (placer plan {shlex.quote(fleet)} -o plan.json), "
                      "then placer apply PLAN applies exactly its changes.")
    # exit 1, not 2 or 0: the plan is whole, but a file asked for is not (a failed -o: no file holds it)
    failed = [plan_unwritten(out_path, out_unwritten, as_json, existed)] if out_unwritten and out_path else []
    if unwritten is not None and metrics_file:
        done = [f"the plan was saved to {out_path}"] if out_path and not out_unwritten else []
        done.append("its JSON is on stdout" if as_json else "its summary is above")
        failed.append(str(metrics_unwritten(metrics_file, unwritten, "; ".join(done))))
    if failed:
        raise CliError("; and ".join(failed)) from (out_unwritten or unwritten)
    if detailed_exitcode and final.has_changes:
        raise SystemExit(2)


def _write_no_plan_metrics(path: str, status: str, drifted: int | None, labels: dict[str, str]) -> None:
    """The metrics file of a plan whose solve found none; a write that fails is said, the solve's error
    being the one the command exits with."""
    from placer.render.metrics import no_plan_metrics

    write_metrics_or_warn(path, no_plan_metrics(status, drifted, labels))


def _warn_empty(fleet_path: str, loaded: Fleet, state: Any) -> None:
    """Warn that a fleet with no pool and no model plans to delete all the state records: its
    settings.yaml named as the fleet (a file is a fleet of its documents) said only "N to delete"."""
    if loaded.pools or loaded.models or not (state.deployments or state.pools):
        return
    err.print(f"warning: {fleet_path} declares no Pool and no Model, so this plan deletes the "
              f"{len(state.deployments)} deployment(s) and {len(state.pools)} pool(s) the state records: is "
              f"{fleet_path} the fleet's directory?", style="yellow")


def _warn_unfinished(backend: Any, state: Any, where: str) -> None:
    """Warn that the state is locked by an apply that runs (the plan reads it half-way: apply refuses
    the plan once it moves on), or that the last apply did not finish (a plan after a crash starts
    from what it did); said as one, the latter misled about an apply that was still running. A lock
    whose apply is gone (killed) is said with the command that removes it (``where``: force-unlock's
    --state or --fleet): it went unsaid, and the apply the plan advised was refused."""
    from placer.state import describe_holder, holder_gone, said, unlock_command

    holder = backend.holder()
    done = len((state.applying or {}).get("done", []))
    if holder is not None and not holder_gone(holder):
        who = describe_holder(holder) if holder.get("ID") else "by a lock that names no holder"
        err.print(f"warning: an apply is running: the state {backend.location} is locked, {who}; this plan "
                  f"starts from the {done} change(s) it has recorded so far, and `placer apply` will refuse it "
                  "as stale once that apply records another or finishes: plan again once it has finished",
                  style="yellow")
        return
    if state.applying:
        err.print(f"warning: the last apply (plan {state.applying.get('plan')}) did not finish; "
                  f"{done} change(s) were recorded as done; this plan starts from what was really done",
                  style="yellow")
    if holder is not None:  # its holder is gone
        err.print(f"warning: the state {backend.location} is locked by an apply that no longer runs (pid "
                  f"{said(holder.get('PID'))} on this host: killed?), and `placer apply` refuses until the lock is "
                  f"removed: run `{unlock_command(holder, where)}`", style="yellow")


def _refresh(fleet: Fleet, state: Any, apply_cfg: dict[str, Any], then: str) -> tuple[Any, int]:
    """(the state as the providers hold it, how many drifts were reported). Each read is tried again
    after throttling, a 5xx or a timeout (``provider_retrier``; ``then``: what to do once its tries
    are spent): one throttled read stopped the refresh, exit 1. Every read is made before any drift
    is said, and nothing is written: a refresh whose reads failed leaves no half-read world behind."""
    from placer.refresh import drift, observe_state, unrecorded

    providers = providers_for(apply_cfg)
    retry = provider_retrier(then)
    observed = observe_state(state, providers, retry)
    lines = drift(state, observed) + unrecorded(state, providers, retry)
    for line in lines:
        err.print(f"drift: {line}", style="yellow")
    return observed, len(lines)


@cli.command()
@click.argument("fleet", type=NamedPath())
@click.option("--state", "state_path", type=NamedPath(), help="Use this local state file instead of Settings'.")
@metrics_options()
def refresh(fleet: str, state_path: str | None, metrics_file: str | None, metrics_labels: tuple[str, ...]) -> None:
    """Read what really runs from the providers and report drift against the state (changes nothing)."""
    labels = metrics_labels_of(metrics_file, metrics_labels)
    metrics_target(metrics_file, "refresh")
    with spinner("refreshing") as progress:
        loaded = read_fleet(fleet, progress)
        cfg = settings_json(loaded)
        backend = backend_from(cfg["state"], state_path, progress)
        metrics_refusal(metrics_file, backend, fleet)
        progress(f"reading the state ({backend.location})")
        state = backend.read()
        progress("reading what runs from the providers")
        _, drifts = _refresh(loaded, state, cfg["apply"], f"wait a few minutes, then run `placer refresh "
                             f"{shlex.quote(fleet)}` again (it changes nothing: the state is as it was)")
    from placer.refresh import unhealthy, unready_pools

    notes, pools = unhealthy(state), unready_pools(state)
    unwritten: OSError | None = None
    if metrics_file:
        from placer.render.metrics import refresh_metrics

        # said after the notes, which it withheld (with a bare "cannot write ...")
        text = refresh_metrics(drifts, len(notes), len(pools), labels)
        unwritten = failed_write(lambda: write_metrics(metrics_file, text))
    for line in notes + pools:
        err.print(f"note: {line}", style="yellow")
    if not drifts:
        out.print("No drift: the providers hold what the state records.")
    if unwritten is not None and metrics_file:
        raise metrics_unwritten(metrics_file, unwritten, "the refresh's findings are above") from unwritten


def _names_a_fleet(target: str) -> bool:
    """Whether apply's TARGET is a fleet (a directory, or one YAML file) rather than a plan file. One
    that cannot be looked at (in a folder this user cannot enter, `chmod 600`) is taken as a plan,
    whose read says why and what to change: it was Python's "[Errno 13] Permission denied: 'PLAN'"."""
    from placer.spec.source import YAML_SUFFIXES

    path = Path(target)
    try:
        return path.is_dir() or (path.is_file() and target.lower().endswith(YAML_SUFFIXES))
    except OSError:
        return False


@cli.command()
@click.argument("target", type=NamedPath())
@click.option("--auto-approve", is_flag=True, help="With a FLEET (a directory or one YAML file): plan and apply in one go.")
@click.option("--state", "state_path", type=NamedPath(), help="Use this local state file instead of the plan's.")
@click.option("--now", "now_text", help="With --auto-approve: the plan's time (ISO).")
@click.option("--fleet", "fleet_path", type=NamedPath(),
              help="With a saved PLAN: refuse it unless it was made from this fleet as it is now (its digest).")
@click.option("--full-search", is_flag=True, help="With --auto-approve: " + FULL_SEARCH_HELP[0].lower() + FULL_SEARCH_HELP[1:])
@metrics_options(" Written when the apply fails too.")
def apply(target: str, auto_approve: bool, state_path: str | None, now_text: str | None,
          fleet_path: str | None, full_search: bool, metrics_file: str | None, metrics_labels: tuple[str, ...]) -> None:
    """Execute the changes of a saved PLAN (or plan and apply FLEET with --auto-approve)."""
    started, tally = time.monotonic(), _Tally()
    labels = metrics_labels_of(metrics_file, metrics_labels)
    metrics_target(metrics_file, "apply")
    try:
        _apply(target, auto_approve, state_path, now_text, fleet_path, full_search, tally, metrics_file)
    except BaseException as exc:
        if metrics_file and not isinstance(exc, MetricsRefused):
            # an apply that failed or was stopped says so (success 0), its own error kept as what is said
            write_metrics_or_warn(metrics_file, _apply_metrics(metrics_file, tally, False, started, labels))
        raise
    if metrics_file:
        try:
            write_metrics(metrics_file, _apply_metrics(metrics_file, tally, True, started, labels))
        except OSError as exc:
            raise CliError(f"the apply completed (state serial {tally.serial}), but writing --metrics-file failed: "
                           f"{exc}") from exc


@dataclasses.dataclass
class _Tally:
    """What an apply got to, for its metrics: the plan's changes, those made and recorded, the
    state's serial and the retries, each None until known."""

    planned: int | None = None
    applied: int | None = None
    serial: int | None = None
    retries: int | None = None


def _apply_metrics(path: str, tally: _Tally, success: bool, started: float, labels: dict[str, str]) -> str:
    """The metrics file's text for an apply that ended (``success``), its series labelled ``labels``; one
    that failed keeps the last success's time from the file it replaces, where that file has it (with
    those labels)."""
    from placer.render.metrics import LAST_SUCCESS, ApplyOutcome, apply_metrics, previous_value

    now = time.time()
    last: float | None = now
    if not success:
        previous = _metrics_text(path)
        last = None if previous is None else previous_value(previous, LAST_SUCCESS, labels)
    return apply_metrics(ApplyOutcome(success=success, duration_s=time.monotonic() - started, finished_at=now,
                                      planned=tally.planned, applied=tally.applied, serial=tally.serial,
                                      retries=tally.retries, last_success_at=last), labels)


def _apply(target: str, auto_approve: bool, state_path: str | None, now_text: str | None,
           fleet_path: str | None, full_search: bool, tally: _Tally, metrics_file: str | None = None) -> None:
    from placer.apply import Applier, check_fresh
    from placer.planfile import read
    from placer.retry import RetryPolicy

    # a fleet: a directory, or one YAML file, as plan and validate take it (a fleet file was read as a
    # plan: "not a plan file (invalid JSON at line 1 ...)")
    fleet_given = _names_a_fleet(target)
    if fleet_given:
        if fleet_path is not None:
            fail("--fleet checks a saved plan against the fleet; with a fleet, drop it")
        if not auto_approve:
            fail(f"{target} is a fleet, not a plan: save a plan with `placer plan {shlex.quote(target)} -o plan.json` and apply "
                 "that, or pass --auto-approve to plan and apply in one go")
        from placer.planner import make_plan

        now = parse_now(now_text)
        with spinner() as progress:
            loaded = read_fleet(target, progress)
            deploy_outside(target, loaded)
            backend = backend_from(settings_json(loaded)["state"], state_path, progress)
            metrics_refusal(metrics_file, backend, target)
            progress(f"reading the state ({backend.location})")
            state = backend.read()
            _warn_empty(target, loaded, state)
            made = make_plan(loaded, state, rules_for(now), now, progress, whole=full_search)
        body = dict(made.plan.body)
        body["settings"] = settings_json(loaded, state_path)
        the_plan = dataclasses.replace(made.plan, body=body)
        from placer.render import summary

        summary.render(the_plan.to_json(), out)
    else:
        if full_search:  # it would be ignored: the saved plan's search is over
            fail(f"--full-search sets how the plan that --auto-approve makes from a fleet is searched; {target} is a "
                 "saved plan, searched when it was made: drop --full-search, or plan again with `placer plan FLEET "
                 "--full-search -o PLAN`")
        if now_text is not None:  # it was ignored: the saved plan was applied as it was made
            fail("--now sets the time of the plan that --auto-approve makes from a fleet directory; a saved plan "
                 "was made at its own time (its createdAt): drop --now, or plan again with `placer plan FLEET "
                 "--now TIME -o PLAN`")
        the_plan = read(target)
        if fleet_path is not None:
            with spinner("reading the fleet") as progress:
                fleet_now = read_fleet(fleet_path, progress)
            if not fleet_now.made_from(the_plan.fleet_digest):
                fail(f"{target} was made from another version of {fleet_path} (plan {the_plan.fleet_digest[:19]}…, "
                     f"fleet now {fleet_now.digest[:19]}…); nothing was applied: plan it again")
    settings = the_plan.body["settings"]  # a plan file has them (``planfile.loads``), as a fleet's plan does
    # the apply's own: it says on stderr when it waits to try an S3 call again (the plan's told a spinner)
    backend = backend_from(settings["state"], state_path, lambda msg: err.print(msg, style="dim"))
    # the state it records into, the plan it applies (a fleet's: planned above), the fleet --fleet names
    metrics_refusal(metrics_file, backend, fleet_path, None if fleet_given else {"the plan file this apply applies": target})
    apply_cfg = settings["apply"]
    providers = providers_for(apply_cfg, plan=the_plan)
    retry = RetryPolicy(base_seconds=retry_base_seconds())
    plan_id = str(uuid.uuid4())
    demand = {m: float(v.get("demand", 0.0)) for m, v in the_plan.body.get("models", {}).items()}
    cost_after = the_plan.body.get("cost", {}).get("totalUsdPerHour")
    total = sum(1 for c in the_plan.changes if c.action != "no-op")
    tally.planned = total
    done = [0]
    bar = _progress_bar(total)

    def report_progress(msg: str, change: Any) -> None:
        starting = change is not None and msg.startswith(("create", "update", "delete"))
        if bar is not None:
            bar.progress.update(bar.task, description=msg[:60])
            if starting:
                bar.progress.advance(bar.task)
            return
        if starting:
            done[0] += 1
            err.print(f"[{done[0]}/{total}] {msg}")
        else:
            err.print(msg, style="dim" if change is not None else "bold")

    applier = Applier(backend, providers, parallelism=int(apply_cfg.get("parallelism", 4)),
                      health_timeout_s=float(apply_cfg.get("healthTimeoutSeconds", 600)), retry=retry,
                      progress=report_progress)
    report: ApplyReport | None = None
    unread: Exception | None = None  # the state could not be read, or the plan is stale
    stopped: BaseException | None = None  # the apply's own failure or interrupt
    applied = 0
    # deployments and pools the state records as made but not healthy, once the apply stopped
    unhealthy: list[str] = []
    # what went wrong is said once the lock is released, or not: it said "released the state lock",
    # and nothing of a lock S3 had failed to release (an outage)
    try:
        with backend.lock("apply"), _saying(applier.notes), sigterm_interrupts() as stopped_by:
            try:
                state = backend.read()
                tally.serial, tally.applied = state.serial, 0
                check_fresh(the_plan, state, backend.location)
            except Exception as exc:
                unread = exc
            else:
                try:
                    if bar is not None:
                        with bar.progress:
                            report = applier.run(the_plan, state, plan_id, cost_after, demand)
                    else:
                        report = applier.run(the_plan, state, plan_id, cost_after, demand)
                except (Exception, KeyboardInterrupt) as exc:
                    stopped = exc
                    applied = len((state.applying or {}).get("done", []))
                    tally.serial, tally.applied = state.serial, applied
                    tally.retries = applier.report.retries if applier.report is not None else None
                    unhealthy = sorted(f"deployment/{key}" for key, entry in state.deployments.items()
                                       if entry.get("healthy") is False)
                    unhealthy += sorted(f"pool/{key}" for key, entry in state.pools.items()
                                        if entry.get("healthy") is False)
    except Exception as exc:
        if report is None and unread is None and stopped is None:
            raise  # the lock was not taken
        lock_left: Exception | None = exc
    else:
        lock_left = None
    if stopped is not None:
        raise CliError(_apply_stopped(stopped, applied, total, stopped_by[0], applier, backend.location,
                                      lock_left, unhealthy)) from stopped
    if unread is not None:
        if lock_left is None:
            raise unread
        raise CliError(f"{_clause(unread)}. Releasing the state lock failed too: {lock_left}") from unread
    assert report is not None
    tally.applied, tally.serial, tally.retries = len(report.applied), report.serial, report.retries
    _say_complete(report, total)
    if lock_left is not None:
        # the apply completed, and only releasing the lock failed: say both (it said only the latter)
        raise CliError(f"the apply completed, but releasing the state lock failed: {lock_left}") from lock_left


def _apply_stopped(exc: BaseException, applied: int, total: int, signal_name: str, applier: Applier,
                   location: str, lock_left: Exception | None, unhealthy: list[str]) -> str:
    """Why an apply stopped, what the state records of what it did (a change made whose record
    failed, and the state write after it too, is named: it said the state recorded "exactly what was
    done" without it; ``unhealthy``, the deployments it records as made but not healthy, are named:
    it said there was such a deployment of every stopped apply), and whether the lock is left."""
    from placer.apply import UnfinishedError
    from placer.state import StateConflict

    lock = f" Releasing the state lock failed too: {_clause(lock_left)}" if lock_left is not None else ""
    conflict = next((e for e in (exc, exc.__cause__, applier.fold_error) if isinstance(e, StateConflict)), None)
    if conflict is not None:
        # another writer's state in place of this apply's: it said the state "records exactly what was done"
        # or "still says the apply did not finish" of a state that held none of it
        if isinstance(exc, UnfinishedError):
            what = f"all {total} change(s) were made, but the state write that marks the apply finished was refused"
        elif isinstance(exc, KeyboardInterrupt):
            what = f"apply interrupted ({signal_name}) after {applied} of {total} change(s); writing the state was refused"
        else:
            what = f"apply failed after {applied} of {total} change(s)" + (
                "" if exc is conflict else f": {_clause(exc)}; writing the state after was refused too")
        return (f"{what}: {_clause(conflict)}. The state ({location}) may not record the {applied} change(s) this "
                "apply made: find out who wrote it (an S3 bucket's versions list each write), then run `placer plan "
                f"--refresh`, which plans from what the providers run, and apply that plan.{lock}")
    if isinstance(exc, UnfinishedError):
        finished = f"all {total} change(s) were made and recorded" if total else "the plan had no changes left"
        left = "it should find none left"
        if applier.healthy_unwritten:  # it said "none left", and the plan applied them again
            one = len(applier.healthy_unwritten) == 1
            it = "it" if one else "them"
            left += (f" but {', '.join(sorted(applier.healthy_unwritten))} ({'its' if one else 'their'} health wait "
                     f"passed, which that write was to record: the plan applies {it} again and waits for {it})")
        return (f"{finished}, but the state write that marks the apply finished failed: {_clause(exc)}. The state "
                f"({location}) still says the apply did not finish: the next `placer plan` starts from the changes "
                f"it records ({left}), and applying that plan marks it finished.{lock}")
    if isinstance(exc, KeyboardInterrupt):
        what = (f"apply interrupted ({signal_name}) after {applied} of {total} change(s): it stopped once the "
                "changes in flight were done" + ("" if lock_left else ", and released the state lock"))
    else:
        what = f"apply failed after {applied} of {total} change(s): {_clause(exc)}"
        if applier.also_failed:
            one = len(applier.also_failed) == 1
            what += (f". {len(applier.also_failed)} other change{'' if one else 's'} failed too: "
                     + "; ".join(_clause(other) for other in applier.also_failed))
        if applier.made_failing:
            # a request taken whose answer was lost (a timeout, a proxy's 504): the provider holds what was
            # planned, and the state records it; it was left out, and the state said to be exact
            one = len(applier.made_failing) == 1
            what += (f". Even so, the provider holds {', '.join(applier.made_failing)} as planned (it took the "
                     f"change; its answer or the wait for it failed): the state records {'it' if one else 'them'} "
                     "as made")
    if applier.left_running:
        # sent, and its provider's wait for it (a GCP resize's operation) stopped: the apply said the failure
        # only once that wait had ended (up to 600 s), and nothing of what the provider may still do
        by = "The interrupt" if isinstance(exc, KeyboardInterrupt) else "That failure"
        what += f". {by} stopped the apply's wait for what it had sent: " + "; ".join(
            _clause(e) for e in applier.left_running.values())
    if applier.unrecorded:
        made = ", ".join(applier.unrecorded)
        one = len(applier.unrecorded) == 1
        told = (f"{made} {'was' if one else 'were'} made but {'is' if one else 'are'} not recorded: recording "
                f"{'it' if one else 'them'} failed, and so did writing the state after "
                f"({_clause(applier.fold_error or exc)}). The state ({location}) records the rest of what was done; "
                f"the next `placer plan` does not know of {made} and plans {'it' if one else 'them'} again")
    else:
        marked = ""
        if unhealthy:
            # made by this apply and stopped before their wait (another change failed), or whose wait
            # did not pass (this apply's, or the last one's): it said the latter of all of them
            unwaited = [a for a in unhealthy if a in applier.marked and a not in applier.waited]
            # waited for when Ctrl-C or SIGTERM came: it said their wait "did not pass", and the operator
            # looked for what held pods that were never given the time
            ended = [a for a in unhealthy if isinstance(exc, KeyboardInterrupt) and a in applier.waited]
            # waited for when another wait of the phase failed, which stopped theirs at once: it said their
            # wait "did not pass" (and said the failure only once they had timed out)
            cut = [a for a in unhealthy if a in applier.stopped_waits and a not in ended]
            # sent, its provider's wait for it stopped (a GCP resize's operation): recorded at the size it asked
            # for, not seen done (it said the apply stopped before waiting for its nodes)
            sent = [a for a in unhealthy if a in applier.left_running]
            unwaited = [a for a in unwaited if a not in sent]
            failed = [a for a in unhealthy if a not in unwaited and a not in ended and a not in cut and a not in sent]
            why = []
            # a pool's wait is for the nodes it grew by (phase 1), a deployment's for its rollout
            for group, deployments, pools in (
                    (failed, "whose health wait did not pass", "whose nodes the wait did not see come up"),
                    (cut, "whose health wait the apply stopped when another wait failed",
                     "whose wait for {its} nodes the apply stopped when another wait failed"),
                    (ended, "whose health wait the interrupt ended", "whose wait for {its} nodes the interrupt ended"),
                    (sent, "whose change was sent and not seen done",
                     "at the size {its} resize asked for, which was sent and not seen done"),
                    (unwaited, "which the apply stopped before waiting for {its} health",
                     "which the apply stopped before waiting for {its} nodes")):
                for kind, words in (("deployment/", deployments), ("pool/", pools)):
                    names = [a for a in group if a.startswith(kind)]
                    if names:
                        why.append(f"{', '.join(names)}, {words.format(its='its' if len(names) == 1 else 'their')}")
            one = len(unhealthy) == 1
            marked = (f" ({'; '.join(why)}, as made but not healthy: the next "
                      f"plan applies {'it' if one else 'them'} again and waits for {'it' if one else 'them'})")
        told = (f"The state ({location}) records exactly what was done{marked}; run `placer plan` to see what "
                "remains, then apply the new plan")
    return f"{what}. {told}.{lock}"


@contextmanager
def _saying(notes: list[str]) -> Iterator[None]:
    """Print ``notes`` (what the apply mended, such as a kustomization it restored) once the apply
    ends, well or not (a user's edit was undone under "No changes")."""
    try:
        yield
    finally:
        for note in notes:
            err.print(note, style="yellow")


def _say_complete(report: ApplyReport, total: int) -> None:
    kept = ""
    if report.kept:  # what a refreshed plan kept of what runs, recorded (the state kept its old figures)
        kept = f"the state now records what the refresh saw run, which the plan kept: {names(report.kept, 10)}; "
    if not total:
        out.print("No changes. The infrastructure matches the plan"
                  + (f"; {kept}state serial {report.serial}." if kept else "."))
    else:
        out.print(f"Apply complete: {len(report.applied)} change(s) applied"
                  + (f" ({report.retries} retried)" if report.retries else "")
                  + f"; {kept}state serial {report.serial}.")


def _clause(exc: BaseException) -> str:
    """An error's message as a clause of a longer sentence: without its closing period."""
    return str(exc).rstrip().rstrip(".")


@cli.command()
@click.argument("plan_path", type=NamedPath())
@click.option("--json", "as_json", is_flag=True, help="Print the plan file as JSON.")
@click.option("--markdown", is_flag=True, help="Print Markdown, for a pull-request comment.")
@click.option("--max-chars", type=click.IntRange(min=0), default=None,
              help="With --markdown: at most this many characters, rows cut where they do not fit "
                   "(default 60000, under GitHub's 65536 for a comment; 0: no limit). The counts and costs "
                   "are never cut: a limit below them is refused.")
@click.option("--plan-url", metavar="URL",
              help="With --markdown: where the comment's readers download PLAN (a CI job's artifact); "
                   "the note on rows cut links it and names PLAN by its file name.")
def show(plan_path: str, as_json: bool, markdown: bool, max_chars: int | None, plan_url: str | None) -> None:
    """Print a saved plan."""
    from placer.planfile import read
    from placer.render import markdown as md
    from placer.render import summary

    if as_json and markdown:
        fail("choose one of --json and --markdown")
    if max_chars is not None and not markdown:
        fail("--max-chars limits --markdown; add --markdown")
    if plan_url is not None and not markdown:
        fail("--plan-url is linked from --markdown's comment; add --markdown")
    if plan_url is not None and not re.fullmatch(r"https?://\S+", plan_url):
        fail(f"--plan-url {plan_url!r}: give the http(s) URL the comment's readers download the plan from "
             "(in GitHub Actions, actions/upload-artifact's artifact-url output)")
    the_plan = read(plan_path)
    if as_json:
        echo(the_plan.dumps(), nl=False)
    elif markdown:
        limit = md.COMMENT_CHARS if max_chars is None else (max_chars or None)
        try:
            echo(md.render(the_plan.to_json(), limit, plan_path, plan_url), nl=False)  # it ends in its newline
        except md.LimitTooLow as exc:
            fail(f"--max-chars {limit}: {exc}, which are never cut; give at least {exc.floor}, or 0 for no limit")
    else:
        summary.render(the_plan.to_json(), out)


@cli.command("force-unlock")
@click.argument("lock_id")
@click.option("--fleet", "fleet_path", type=NamedPath(), help="Fleet whose Settings name the state.")
@click.option("--state", "state_path", type=NamedPath(), help="The local state file.")
def force_unlock(lock_id: str, fleet_path: str | None, state_path: str | None) -> None:
    """Break a stale state lock (only with its LOCK_ID, as printed by the refused command)."""
    cfg: dict[str, Any] = settings_json(read_fleet(fleet_path))["state"] if fleet_path else {}
    backend = backend_from(cfg, state_path)
    holder = backend.force_unlock(lock_id)
    if not holder.get("ID"):
        out.print(f"Unlocked {backend.location} (the lock named no holder).")
        return
    from placer.state import said

    out.print(f"Unlocked {backend.location} (was held by {said(holder.get('Who', '?'))} since "
              f"{said(holder.get('Created', '?'))}).")


@cli.command()
@click.argument("plan_path", type=NamedPath())
@click.option("--out", "out_dir", type=NamedPath(), required=True, help="Directory of the GitOps tree.")
def render(plan_path: str, out_dir: str) -> None:
    """Write the GitOps tree of a plan: manifests per cluster and terraform tfvars."""
    from placer.planfile import atomic_write_all, cannot_write, link_refusal, read, read_said, tree_leftovers
    from placer.render.moved import MOVED
    from placer.render.tree import listed, placer_wrote, terraform_files, tree

    root = Path(out_dir)
    with spinner("rendering") as progress:
        try:  # the first look at --out: a name too long for the file system is said here
            left_behind = tree_leftovers(root)
        except OSError as exc:
            raise cannot_write(out_dir, exc) from exc
        for left in left_behind:  # a render or apply killed mid-write left it
            left.unlink(missing_ok=True)
        progress(f"reading {plan_path}")
        the_plan = read(plan_path).to_json()
        # a manifest placer did not write (a namespace, an Argo CD app) stays, listed in its folder's
        # kustomization; placer's own that the plan no longer has are removed (every file was, unsaid)
        progress(f"reading the manifests under {out_dir}")
        theirs: dict[str, list[str]] = {}
        stale: list[Path] = []
        found = root.glob("clusters/*/*")
        for path in sorted(p for p in found if listed(p) or (p.name == "kustomization.yaml" and p.is_file())):
            # placer writes *.yaml only: a *.yml is someone's, listed whatever its labels
            if path.name == "kustomization.yaml" or (
                    path.suffix == ".yaml" and placer_wrote(read_said(path, "to tell whether placer wrote it; nothing was written"))):
                stale.append(path)
            else:
                theirs.setdefault(path.parent.name, []).append(path.name)
        progress("building the GitOps tree")
        notes: list[str] = []
        files = tree(the_plan, theirs, terraform_files(root), notes)
        progress(f"comparing {len(files):,} file(s) with the tree")
        # only what differs is written, all at once (a sync a file and one a folder took 6 s at M)
        changed = {root / rel: text for rel, text in files.items()
                   if not (root / rel).exists() or read_said(root / rel, "to compare it with the plan's; nothing was written") != text}
        keep = {root / rel for rel in files}
        if (root / MOVED).is_file() and MOVED not in files:  # placer's, with no rename left to record
            stale.append(root / MOVED)
        gone = [path for path in stale if path not in keep]
        # as the gitops apply refuses it: a link in the tree led a render outside it, to write there
        # and to remove what the plan no longer has there
        refused = [why for path in [*changed, *gone] if (why := link_refusal(root, path)) is not None]
        if refused:
            fail(refused[0] + (f" ({len(refused) - 1} more such file(s))" if len(refused) > 1 else ""))
        progress(f"writing {len(changed):,} file(s)")
        atomic_write_all(changed)
        progress("removing the files the plan no longer has")
        for path in gone:
            path.unlink()
        for folder in sorted({path.parent for path in gone}):  # as the gitops apply, no empty cluster folder left
            if not any(folder.iterdir()):
                folder.rmdir()
    # one at a Deployment's path is the plan's now, as the gitops apply writes it (it was said kept)
    taken = sorted(f"clusters/{folder}/{name}" for folder, names in theirs.items() for name in names
                   if f"clusters/{folder}/{name}" in files)
    kept = sum(len(names) for names in theirs.values()) - len(taken)
    same = len(files) - len(changed)
    out.print(f"Wrote {len(changed)} file(s) under {out_dir}" + (f", {same} unchanged" if same else "")
              + (f", removed {len(gone)} the plan no longer has" if gone else "")
              + (f"; kept {kept} manifest(s) placer did not write, listed in their kustomization" if kept else "")
              + (f"; replaced {len(taken)} placer did not write with the plan's Deployment of that name: "
                 + names(taken, 3) if taken else "")
              + ".")
    for note in notes:
        err.print(f"warning: {note}", style="yellow")


@cli.command()
@click.argument("fleet", type=NamedPath())
@click.argument("model")
@click.option("--now", "now_text", help="The plan's time (ISO); not with --plan, whose time is its createdAt.")
@click.option("--state", "state_path", type=NamedPath(),
              help="Use this local state file instead of Settings' (with --plan: instead of the plan's).")
@click.option("--all", "every_row", is_flag=True,
              help="One row per other pool, however many (by default, beyond 40 pools, one row per reason).")
@click.option("--plan", "plan_path", type=NamedPath(),
              help="Explain this saved plan (the one a pull request shows) instead of planning afresh.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
def explain(fleet: str, model: str, now_text: str | None, state_path: str | None, every_row: bool,
            plan_path: str | None, as_json: bool) -> None:
    """Where MODEL goes and why: its cost terms, why each other pool is out, the next-best pool."""
    from rich.table import Table

    from placer.candidates import required_of, retirement
    from placer.explain import GROUP_ABOVE, GROUP_NAMES, Explanation, grouped
    from placer.loader_hint import suggest_name
    from placer.render.report import json_report, rate_format

    with spinner("explaining") as progress:
        saved = None
        if plan_path is not None:
            from placer.planfile import read

            if now_text is not None:  # its placement was explained under the rules of another time
                fail(f"--now sets the time of a plan explain makes afresh; {plan_path} was made at its own time "
                     "(its createdAt), which explain takes: drop --now, or explain without --plan")
            progress(f"reading {plan_path}")
            saved = read(plan_path)
            now_text = saved.created_at  # the plan's rules are those of its time
        now = parse_now(now_text)
        loaded = read_fleet(fleet, progress)
        if model not in loaded.models:
            fail(f"no model named {model!r} in {fleet}{suggest_name(model, loaded.models)}")
        if saved is not None and not loaded.made_from(saved.fleet_digest):
            fail(f"{plan_path} was made from another version of {fleet} (plan {saved.fleet_digest[:19]}…, fleet now "
                 f"{loaded.digest[:19]}…): explain the fleet as it is without --plan, or plan it again")
        # a saved plan's own state, as apply reads it (one made with --state names that file)
        settings = saved.body["settings"] if saved is not None else settings_json(loaded)
        backend = backend_from(settings["state"], state_path, progress)
        progress(f"reading the state ({backend.location})")
        state = backend.read()
        stale = None  # a saved plan not made from this state: apply refuses it, and its search weighed other churn
        if saved is not None:
            from placer.apply import InconsistentPlanError, StalePlanError, check_fresh

            try:
                check_fresh(saved, state, backend.location)
            except (StalePlanError, InconsistentPlanError) as exc:
                stale = str(exc)
        rules = rules_for(now)
        retired = retirement(loaded, rules, loaded.models[model], required_of(loaded, loaded.models[model]))
        # no pool is its own reason, and the fleet's plan need not be solved to say so
        ex = None if retired is not None else _explanation(loaded, rules, model, state, saved, plan_path, progress)
        if ex is not None:
            ex.stale = stale
    if ex is None:
        if as_json:
            echo(json_report(Explanation(model, {}, 0.0, [], [], retired=retired).as_json()))
        else:
            out.print(f"{model} is not placed, on any pool: {retired}")
        return
    if as_json:
        echo(json_report(ex.as_json()))
        return
    if ex.afresh is not None:  # bench L: the saved plan had m on p and q, this explain's fresh plan on p and r, unsaid
        out.print(f"Planned afresh ({ex.afresh}): a fleet this large plans differently in detail from run to run, so "
                  f"a plan you saved may place {model} elsewhere; `placer explain {shlex.quote(fleet)} "
                  f"{shlex.quote(model)} --plan PLAN` explains that plan", style="yellow")
    # its terms of the running cost: compute always, the others where they are more than 0.00
    paid = [f"{k} {v:,.2f}" for k, v in ex.terms.items() if k == "compute" or abs(v) >= 0.005]
    if ex.placed:
        where = ", ".join(f"{r} replica(s) on {p}" for p, r in sorted(ex.placed.items()))
        out.print(f"{model}: {where}; {', '.join(paid)} USD/h")
    else:
        out.print(f"{model} is not placed anywhere" + (f"; {', '.join(paid[1:])} USD/h" if paid[1:] else "")
                  + (f": {ex.not_needed}, so no replica is needed" if ex.not_needed else ""))
    # its rates as the plan's tables give them (one decimal said 0.4 of 0.45, and 1,000.0)
    rate_fmt = rate_format([*(r[2] for r in ex.routes), *(r for _, r in ex.unmet)])
    for loc, pool, rate, lat in ex.routes:
        out.print(f"  demand at {loc}: {rate_fmt.format(rate)} routed to {pool} ({lat:g} ms)")
    for loc, rate in ex.unmet:
        out.print(f"  demand at {loc}: {rate_fmt.format(rate)} unmet ({ex.unmet_why[loc]})", style="red")
    for name, (usd, detail) in sorted(ex.penalties.items()):  # what its place costs beyond its own terms
        out.print(f"  breaks preferred policy {name}: {usd:,.2f} USD/h of penalty ({detail})", style="yellow")
    if ex.missing and ex.missing_why:
        out.print(f"  {ex.missing} replica(s) not placed ({ex.missing_why})", style="red")
    for idle in ex.idle:  # replicas no route needs: held by a rule, or (yellow) by none
        out.print(f"  {idle.text()}", style="yellow" if idle.spare else None)
    others = len(ex.out) + len(ex.unused)
    rows = grouped(ex, above=others if every_row else GROUP_ABOVE)
    many = len(rows) < others
    title = f"Other pools: {others}, grouped by reason (--all: one row each)" if many else "Other pools"
    if many and any(len(pools) > GROUP_NAMES for pools, _ in rows):
        title = f"Other pools: {others}, grouped by reason, up to {GROUP_NAMES} named a row (--all: one row each)"
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("pools" if many else "pool", overflow="fold")
    table.add_column("why not", overflow="fold")  # a policy's name was cut, "eu-data-stays-in-e…"
    for pools, why in rows:
        table.add_row(names(pools, len(pools) if every_row else GROUP_NAMES), why)
    if rows:  # a fleet of one pool has no others to tell of
        out.print(table)
    said = ex.next_best_text()
    if said is not None:
        out.print(said, style="yellow" if ex.next_best_cheaper else None)


def _explanation(loaded: Fleet, rules: Any, model: str, state: Any, saved: Plan | None, plan_path: str | None,
                 progress: Callable[[str], None]) -> Explanation:
    """``model`` explained in the plan ``saved`` (from ``plan_path``), or in the fleet's plan solved now."""
    from placer.candidates import Candidates, Exclusions
    from placer.diff import placed_replicas, running_replicas
    from placer.explain import every_pool_out
    from placer.explain import explain as run_explain
    from placer.optimizer import explain_infeasible, optimize
    from placer.optimizer.scale import use_large
    from placer.render.report import gap_text

    current = running_replicas(loaded, state)  # what runs where the fleet puts it, as `plan` prices it
    if saved is not None:  # the plan as saved: nothing to solve but the next best
        from placer.optimizer import SolveResult
        from placer.planfile import PlanFileError
        from placer.planner import placement_of_body

        kept = saved.body.get("solver", {})
        gone = {str(r["model"]): str(r.get("reason", "")) for r in saved.body.get("retired", [])}
        try:
            placed = placement_of_body(saved.body, loaded)
        except PlanFileError as exc:
            fail(f"{plan_path}: {exc}")
        result = SolveResult(str(kept.get("status", "SAVED")), placed,
                             float(kept.get("objectiveUsdPerHour") or 0.0), float(kept.get("boundUsdPerHour") or 0.0),
                             float(kept.get("wallSeconds") or 0.0),
                             candidates=Candidates(retired=gone, excluded=Exclusions(loaded, rules, gone)))
    else:
        result = optimize(loaded, rules, current=current, progress=progress, placed=placed_replicas(loaded, state, current))
    if result.status == "INFEASIBLE":
        progress("infeasible: looking for the conflicting policies")
        conflict = explain_infeasible(loaded, rules, progress).message()
        # a model no pool may run: why each pool is out needs no plan (validate's warning sends the reader here)
        out = every_pool_out(loaded, rules, model)
        fail(f"the fleet has no feasible plan, so {model} has no place: {conflict}" + (f"; and {out}" if out else ""))
    if result.placement is None or result.candidates is None:
        fail(f"the solver stopped with status {result.status} and no plan for the fleet; "
             "raise Settings solver.timeLimitSeconds")
    progress(f"the next best place for {model}")
    ex = run_explain(loaded, rules, model, result, current, result.candidates, progress=progress)
    if saved is None and (result.status != "OPTIMAL" or use_large(loaded)):
        ex.afresh = f"{result.status}, gap {gap_text(result.gap)}, {result.wall_seconds:.1f} s"
    return ex


@cli.command()
@click.argument("fleet", type=NamedPath())
@click.option("--demand-scale", type=float, default=1.0, show_default=True, help="Multiply every demand rate.")
@click.option("--fail-pool", multiple=True, help="A pool that goes down (repeatable).")
@click.option("--fail-location", multiple=True, help="A location whose pools all go down (repeatable).")
@click.option("--fail-provider", multiple=True, help="A provider whose pools all go down (repeatable).")
@click.option("--now", "now_text", help="The plan's time (ISO).")
@click.option("--state", "state_path", type=NamedPath(), help="Use this local state file instead of Settings'.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@metrics_options()
def whatif(fleet: str, demand_scale: float, fail_pool: tuple[str, ...], fail_location: tuple[str, ...],
           fail_provider: tuple[str, ...], now_text: str | None, state_path: str | None, as_json: bool,
           metrics_file: str | None, metrics_labels: tuple[str, ...]) -> None:
    """Re-solve FLEET under a scenario and compare it with the base plan (what `plan` plans from the
    applied state): would it scale or collapse?"""
    from placer.diff import placed_replicas, running_replicas
    from placer.render.report import json_report
    from placer.whatif import Scenario, compare

    now = parse_now(now_text)
    labels = metrics_labels_of(metrics_file, metrics_labels)
    metrics_target(metrics_file, "whatif")
    with spinner() as progress:
        loaded = read_fleet(fleet, progress)
        scenario = Scenario(demand_scale, frozenset(fail_pool), frozenset(fail_location), frozenset(fail_provider))
        backend = backend_from(settings_json(loaded)["state"], state_path, progress)
        metrics_refusal(metrics_file, backend, fleet)
        state = backend.read()
        current = running_replicas(loaded, state)
        report = compare(loaded, rules_for(now), scenario, progress, current=current,
                         placed=placed_replicas(loaded, state, current))
    base = report["base"]
    if not base["feasible"]:
        why = base["conflict"]["message"] if "conflict" in base else (
            f"the solver stopped with status {base['status']} and no placement; raise Settings solver.timeLimitSeconds")
        if metrics_file:
            # the file says so, as plan's does of a fleet with no plan: it was left as it was, and an alert
            # went on reading the last comparison's verdict while every run failed
            from placer.render.metrics import whatif_metrics

            write_metrics_or_warn(metrics_file, whatif_metrics(report, None, demand_scale, fixed=labels))
        fail(f"the fleet has no feasible plan as it is, so there is nothing to compare the scenario with: {why}")
    unwritten: OSError | None = None
    if metrics_file:
        from placer.render.metrics import fleet_facts, whatif_metrics
        from placer.render.whatif import collapses

        # said once the comparison is printed, which it withheld
        text = whatif_metrics(report, collapses(report["scenario"]), demand_scale, fleet_facts(loaded), labels)
        unwritten = failed_write(lambda: write_metrics(metrics_file, text))
    if as_json:
        echo(json_report(report))
    else:
        from placer.render.whatif import render as render_whatif

        render_whatif(report, out)
    if unwritten is not None and metrics_file:
        done = "the comparison's JSON is on stdout" if as_json else "the comparison is above"
        raise metrics_unwritten(metrics_file, unwritten, done) from unwritten


def _register() -> None:
    from placer.cli_discover import discover
    from placer.cli_policy import policy

    cli.add_command(policy)
    cli.add_command(discover)


_register()


# ---------------------------------------------------------------- entry point

# what placer's own words print where the output cannot encode them (an ASCII stdout: a pipe under
# PYTHONIOENCODING=ascii, an old terminal); anything else unencodable, from a user's file, is "?"
ASCII_FOR = {"×": "x", "→": "->", "…": "...", "—": "-", "–": "-", "−": "-", "·": "*", "≤": "<=", "≥": ">="}


def _ascii_for(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return "".join(ASCII_FOR.get(ch, "?") for ch in exc.object[exc.start:exc.end]), exc.end


def plain_where_needed(*streams: Any) -> None:
    """Streams that cannot encode placer's own characters print their ASCII instead (rich chose
    ASCII borders, but the × of "3×pool-a" was an internal error: UnicodeEncodeError)."""
    codecs.register_error("placer-ascii", _ascii_for)
    for stream in streams:
        try:
            "".join(ASCII_FOR).encode(getattr(stream, "encoding", None) or "utf-8")
        except (UnicodeEncodeError, LookupError):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="placer-ascii")


def stdout_written_whole() -> None:
    """Under PYTHONUNBUFFERED=1 (``python -u``) stdout's text layer writes straight to its file and
    drops what a write did not take: a full disk took 10,000 bytes of `placer schema > f`, and the
    command exited 0, its output cut without a word. Over a buffer, a short write is written on or
    fails (``stdout_failed``); every print flushes, so nothing waits in it. Only the process's own
    stdout, which lives as long as it: a wrapper of another's file (a test's capture) closes it when it goes."""
    stream = sys.stdout
    if stream is sys.__stdout__ and isinstance(stream, io.TextIOWrapper) and isinstance(stream.buffer, io.RawIOBase):
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(stream.buffer), encoding=stream.encoding,
                                      errors=stream.errors, line_buffering=True)


def main(argv: Sequence[str] | None = None) -> int:
    stdout_written_whole()
    plain_where_needed(sys.stdout, sys.stderr)
    args = list(sys.argv[1:] if argv is None else argv)
    # anywhere before a `--`, as the internal error's hint says: `placer plan F --debug` too (after
    # `--` it is an argument: a fleet folder named --debug)
    options = args[: args.index("--")] if "--" in args else args
    debug = "--debug" in options
    if debug:
        args = ["--debug", *(a for a in options if a != "--debug"), *args[len(options):]]
    with sigterm_interrupts() as stopped_by:
        return _run(args, debug, stopped_by)


def _run(args: list[str], debug: bool, stopped_by: list[str]) -> int:
    """The command, its errors said in one line each and mapped to exit statuses."""
    try:
        cli.main(args=args, prog_name="placer", standalone_mode=False)
        return 0
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            # click turns Ctrl-C into Abort: it said "Aborted." and exited 1, an error, where the
            # interrupt below was meant (130, as shells count SIGINT)
            return _interrupted(stopped_by[0])
        err.print("Aborted.")
        return 1
    except click.exceptions.NoArgsIsHelpError as exc:  # `placer` alone: its help without "Error:", exit 1 as any usage error (SPEC)
        err.print(exc.format_message())
        return 1
    except click.ClickException as exc:
        err.print(f"Error: {exc.format_message()}")
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            err.print(f"Try '{exc.ctx.command_path} --help'.")
        return 1
    except KeyboardInterrupt:
        return _interrupted(stopped_by[0])
    except Exception as exc:
        fleet_error = _loaded("placer.spec.diagnostics", "FleetError")
        if fleet_error is not None and isinstance(exc, fleet_error):
            said = cast("FleetError", exc)
            for d in said.diagnostics:
                err.print(str(d), style="red" if d.severity == "error" else "yellow")
            n = len(said.errors)
            err.print(f"{n} error{'s' if n != 1 else ''} in the fleet; nothing was planned or changed.")
            return 1
        known = _known_errors()
        # a signal as a module a command imports made its classes, not an internal error (it said "internal
        # error (RuntimeError: Error calling __set_name__ ...)"); placer's own errors say their interrupt
        if not isinstance(exc, known) and from_interrupt(exc):
            return _interrupted(stopped_by[0])
        if debug:
            traceback.print_exc()
        if isinstance(exc, known):
            err.print(f"Error: {exc}")
        else:
            how = "the traceback is above" if debug else "rerun with --debug for the traceback"
            err.print(f"Error: internal error ({type(exc).__name__}: {exc}); {how} and report it")
        return 1


def _interrupted(signal_name: str) -> int:
    """Ctrl-C (SIGINT) or SIGTERM outside an apply, which says what it did itself: exit 130 or 143,
    as shells count them."""
    said, status = interrupted(signal_name)
    err.print(said)
    return status


# placer's own errors, said in one line: (module, class)
KNOWN_ERRORS = (("placer.planfile", "PlanFileError"), ("placer.state", "StateError"), ("placer.apply", "ApplyError"),
                ("placer.planner", "InfeasibleError"), ("placer.planner", "SolveError"),
                ("placer.whatif", "ScenarioError"), ("placer.retry", "RetriesSpent"), ("providers.base", "ProviderError"))


def _loaded(module: str, name: str) -> type[BaseException] | None:
    """The exception class ``name`` of ``module`` where that module was imported, else None: no
    exception of it (or of a subclass, whose module imports it) can have been raised then. Importing
    them to ask put the planner's stack (OR-Tools, scipy: a second) on `placer show missing.json`'s error."""
    found = sys.modules.get(module)
    cls = getattr(found, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def _known_errors() -> tuple[type[BaseException], ...]:
    loaded = [cls for module, name in KNOWN_ERRORS if (cls := _loaded(module, name)) is not None]
    return (CliError, OSError, KnobError, *loaded)
