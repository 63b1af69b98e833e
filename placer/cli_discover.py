"""``placer discover kubernetes|aws|gcp|nvml``: find GPU pools and print them as fleet documents.

Without ``--merge`` the documents go to stdout as multi-document YAML (a header comment says
where they came from, the notes follow as comments), ready to review and save. With
``--merge FLEET`` they are merged into the fleet's files (``placer.discover``), written
atomically, and stdout lists what changed. Tables and notes for people go to stderr, so
stdout stays valid YAML. Register with ``cli.add_command(discover)``; every SDK is imported
only by the subcommand that needs it.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from placer import __version__

if TYPE_CHECKING:
    from placer.retry import Retrier
    from providers.base import Discovered
    from providers.nvml import GpuRow


def _existing_fleet(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a --merge target that is not there before asking any provider (discovery can take a while)."""
    from pathlib import Path

    from placer.cli import fail

    if value is not None and not Path(value).exists():
        fail(f"--merge {value}: no such fleet directory (create it first to start a new fleet)")
    return value


def _name(kind: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """A callback that refuses a ``kind`` name a fleet would refuse, before anything is discovered
    (--location "Frankfurt DC" printed documents that `placer validate` then refused, exit 0)."""
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        from placer.spec.loader import check_name

        why = None if value is None else check_name(kind, value)
        if why is not None:
            raise click.BadParameter(f"{why}; a {kind} name goes into the fleet as it is")
        return value
    return check


def _once(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeated option values, each once: a place read twice gave each of its groups two pools
    of one target, a fleet `placer validate` refuses."""
    return tuple(dict.fromkeys(values))


def _target_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--location", "location", metavar="NAME", callback=_name("Location"),
                     help="Put every discovered pool at this Location (created if the fleet lacks it).")(f)
    f = click.option("--merge", "merge_into", metavar="FLEET", type=click.Path(), callback=_existing_fleet,
                     help="Merge into the fleet directory FLEET instead of printing: update the pools it has "
                          "(only discovered fields), append new documents to FLEET/discovered.yaml.")(f)
    return f


def _retry(kind: str) -> Retrier:
    """Each listing and read of a discovery tried again after throttling, a 5xx or a timeout, as an
    apply tries its calls (its policy; ``PLACER_RETRY_BASE_SECONDS`` the first wait), each wait said
    on stderr; one throttled answer stopped the whole run, with "a retry should get through"."""
    from placer.cli import provider_retrier

    return provider_retrier(f"wait a few minutes, then run `placer discover {kind}` again (nothing was written)")


@click.group("discover")
def discover() -> None:
    """Find GPU pools (Kubernetes nodes, AWS groups, GCP MIGs, this host's GPUs) as fleet documents."""


@discover.command("kubernetes")
@click.option("--kubeconfig", type=click.Path(), help="Kubeconfig file (default: KUBECONFIG or ~/.kube/config).")
@click.option("--context", "contexts", multiple=True, help="Kubeconfig context to read (repeatable; default: current).")
@_target_options
def kubernetes(kubeconfig: str | None, contexts: tuple[str, ...], merge_into: str | None,
               location: str | None) -> None:
    """Group each context's GPU nodes into Pools (by GPU product, count, node group and taints)."""
    from providers.kubernetes import KubernetesProvider

    contexts = _once(contexts)
    provider = KubernetesProvider(kubeconfig=kubeconfig, contexts=list(contexts))
    try:
        found = provider.discover(retry=_retry("kubernetes"))
    finally:
        provider.close()
    which = ", ".join(contexts) if contexts else "the current context"
    _emit(found, f"Kubernetes: {which} of {kubeconfig or 'the default kubeconfig'}", merge_into, location)


@discover.command("aws")
@click.option("--region", "regions", multiple=True, help="Region to read (repeatable; default: AWS_REGION or the "
                                                          "profile's).")
@click.option("--endpoint-url", help="AWS endpoint (a local twin such as moto); default: AWS_ENDPOINT_URL.")
@_target_options
def aws(regions: tuple[str, ...], endpoint_url: str | None, merge_into: str | None, location: str | None) -> None:
    """Pools for the GPU Auto Scaling groups and EKS managed node groups of each region."""
    from providers.aws import AwsProvider

    regions = _once(regions)
    # one try per call, read within 10 s, as apply's: discovery retries, saying so (botocore's own 3
    # tries, silent, inside each of them)
    provider = AwsProvider(region_names=list(regions), endpoint_url=endpoint_url, max_attempts=1, read_timeout_s=10.0)
    found = provider.discover(retry=_retry("aws"))
    _emit(found, f"AWS: {', '.join(regions) if regions else 'the default region'}", merge_into, location)


@discover.command("gcp")
@click.option("--project", "projects", multiple=True, help="Project to read (repeatable; default: the credentials').")
@click.option("--zone", "zones", multiple=True, help="Only the groups of these zones (repeatable).")
@click.option("--region", "regions", multiple=True, help="Only the groups in these regions: regional ones and the zonal "
                                                          "ones of their zones (repeatable).")
@click.option("--api-endpoint", help="Compute API endpoint (a local twin); anonymous credentials there.")
@_target_options
def gcp(projects: tuple[str, ...], zones: tuple[str, ...], regions: tuple[str, ...], api_endpoint: str | None,
        merge_into: str | None, location: str | None) -> None:
    """Pools for the managed instance groups whose instances carry GPUs."""
    from providers.gcp import GcpProvider

    projects, zones, regions = _once(projects), _once(zones), _once(regions)
    found = GcpProvider(projects=list(projects), api_endpoint=api_endpoint).discover(
        list(projects) or None, list(zones) or None, list(regions) or None, retry=_retry("gcp"))
    scope = ", ".join([*zones, *regions])
    _emit(found, f"GCP: {', '.join(projects) if projects else 'the default project'}"
          + (f" ({scope})" if scope else ""), merge_into, location)


@discover.command("nvml")
@click.option("--pool", "pool_name", metavar="NAME", callback=_name("Pool"),
              help="Pool name (default: the host name).")
@click.option("--replay", type=click.Path(exists=True, dir_okay=False), hidden=True,
              help="Answer from an NVML recording instead of this host's driver (tests, demos).")
@_target_options
def nvml(pool_name: str | None, replay: str | None, merge_into: str | None, location: str | None) -> None:
    """Pools for the GPUs of this host (NVIDIA driver), one per GPU model; a table of the GPUs on stderr."""
    from providers.nvml import RealNvml, ReplayNvml, discover_host

    api = ReplayNvml(replay) if replay else RealNvml()
    found, rows = discover_host(api, location, pool_name)
    _gpu_table(rows)
    source = f"NVML on host {api.hostname()}" + (f" (replayed from {replay})" if replay else "")
    _emit(found, source, merge_into, None)


# ---------------------------------------------------------------- output


def _gpu_table(rows: list[GpuRow]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from placer.cli import err

    if not rows:
        return
    table = Table(title="GPUs on this host", title_justify="left", show_edge=False)
    table.add_column("GPU", justify="right")
    table.add_column("name")
    table.add_column("UUID", overflow="fold")
    table.add_column("memory GiB used / total", justify="right")
    table.add_column("util", justify="right")
    table.add_column("MIG")
    table.add_column("type", overflow="fold")
    for r in rows:
        table.add_row(str(r.index), escape(r.name), escape(r.uuid), f"{r.memory_used_gib:.1f} / {r.memory_total_gib:.1f}",
                      "n/a" if r.utilization_pct is None else f"{r.utilization_pct}%", r.mig, escape(r.gpu_type))
    err.print(table)


def _emit(found: Discovered, source: str, merge_into: str | None, location: str | None) -> None:
    from placer.cli import CliError, echo, err, fail
    from placer.discover import MergeError, plan_merge, refused, relocate, render
    from placer.planfile import atomic_write, cannot_write

    if found.unread and not any(d.get("kind") == "Pool" for d in found.documents):
        for note in found.notes:
            err.print(f"note: {note}", style="yellow", markup=False)
        fail(f"could not read {len(found.unread)} group{'s' if len(found.unread) > 1 else ''} "
             f"({', '.join(found.unread[:5])}{', ...' if len(found.unread) > 5 else ''}) and found no GPU pool "
             "in the rest; the notes above say why: fix that and discover again")
    if found.unread:
        err.print(f"{len(found.unread)} group(s) could not be read and are left out (see the notes): "
                  f"{', '.join(found.unread)}", style="yellow", markup=False)
    documents = relocate(found.documents, location) if location else list(found.documents)
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    header = [f"Discovered by placer {__version__} from {source} at {stamp}."]
    if merge_into is None:
        header.append("Review it (prices, jurisdictions), then save it into your fleet or rerun with --merge FLEET.")
        documents, left_out = refused(documents)
        echo(render(documents, header, [*found.notes, *(f"skipped {line}" for line in left_out)]), nl=False)
        if not documents:
            err.print("Nothing found: no GPU pools there (see the notes above).", style="yellow")
        return
    try:
        plan = plan_merge(merge_into, documents, header, found.notes, found.guessed, found.scopes,
                          found.members)
    except MergeError as exc:
        raise CliError(str(exc)) from exc
    for path, text in sorted(plan.files.items()):
        try:
            atomic_write(path, text)
        except OSError as exc:
            # atomic_write's error says the path already: it was said twice ("cannot write P: cannot write P: ...")
            fail(f"{cannot_write(path, exc)}; files written before it keep their new contents")
    for note in plan.notes:
        err.print(f"note: {note}", style="yellow", markup=False)
    for word, lines in (("updated", plan.updated), ("added", plan.added), ("unchanged", plan.unchanged),
                        ("skipped", [f"{label}: no new pool is there" for label in plan.skipped]),
                        ("renamed", plan.renamed), ("skipped", plan.refused), ("ambiguous", plan.ambiguous),
                        ("kept", plan.kept),
                        ("not found", plan.missing)):
        for line in lines:
            echo(f"{word} {line}")
    if not (plan.updated or plan.added):
        echo(f"No changes written to {merge_into}: see the pools skipped, ambiguous or not found above."
                   if plan.refused or plan.ambiguous or plan.missing else f"No changes: {merge_into} already holds what discovery found.")
    else:
        echo(f"Merged into {merge_into}; check it with: placer validate {shlex.quote(str(merge_into))}")
