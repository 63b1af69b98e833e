"""The AWS regions a fleet names, checked against botocore's own list (``placer validate``).

A pool's ``target.aws.region`` (and an S3 state's ``region``) that AWS has no such region of passed
validate, and the plan with it; apply then failed at the group's first call ("Could not connect to
the endpoint URL: https://autoscaling.us-east-9.amazonaws.com/"), terraform at its provider. botocore
ships the regions of every partition (aws, aws-cn, aws-us-gov, the isolated ones) in its endpoints
data, offline; a region it does not list is an error at the field, with the closest it does list.
A region AWS opened after the installed botocore is refused too: the message says to upgrade it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from functools import cache

from placer.spec import Diagnostic, Document


@cache
def known_regions() -> frozenset[str]:
    """Every region botocore's endpoints data lists; none where the data cannot be read (then nothing
    is refused)."""
    try:
        from botocore.loaders import Loader

        data = Loader().load_data("endpoints")
        return frozenset(r for partition in data["partitions"] for r in partition.get("regions", {}))
    except Exception:  # a botocore without the data, or of another layout: no list, no check
        return frozenset()


def region_problems(docs: Iterable[Document]) -> list[Diagnostic]:
    """An error at each AWS region of ``docs`` (a pool's target.aws.region, an S3 state's region)
    that botocore does not list."""
    checked: list[tuple[Document, str, tuple[str, ...]]] = [(doc, doc.spec.target.aws.region, ("spec", "target", "aws", "region"))
               for doc in docs if doc.kind == "Pool" and doc.spec.target.aws is not None]
    checked += [(doc, doc.spec.state.region, ("spec", "state", "region"))
                for doc in docs if doc.kind == "Settings" and doc.spec.state.backend == "s3"
                and doc.spec.state.region is not None and doc.spec.state.endpoint_url is None]
    if not checked:
        return []
    regions = known_regions()
    if not regions:
        return []
    out = []
    for doc, region, where in checked:
        if region in regions:
            continue
        close = difflib.get_close_matches(region, sorted(regions), n=1, cutoff=0.6)
        plain = region.lower().strip()
        close = close or ([plain] if plain in regions else [])
        what = "the group's" if where[1] == "target" else "the state bucket's"
        out.append(doc.diag(".".join(where), f"{region!r} is no AWS region"
                            f"{f' (did you mean {close[0]}?)' if close else ''}: give {what} region, e.g. "
                            "eu-west-1; placer checks it against the regions botocore lists, so one AWS opened "
                            "since needs a newer botocore (pip install -U boto3)", *where))
    return out
