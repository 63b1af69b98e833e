"""AWS regions against botocore's list (``providers.aws_regions``), for `placer validate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from placer.fleet import load_fleet
from placer.spec import FleetError
from providers import aws_regions

REPO = Path(__file__).resolve().parents[2]


def test_the_regions_tests_and_examples_name_are_real_and_every_partitions_too() -> None:
    """The moto fixtures, the examples and the corpus name these; moto takes real names only. The
    other partitions (China, GovCloud) are AWS regions as well."""
    regions = aws_regions.known_regions()
    assert {"eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "cn-north-1", "us-gov-west-1"} <= regions
    assert "us-east-9" not in regions


def test_a_region_is_refused_only_where_botocore_lists_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A botocore whose data placer cannot read refuses nothing (placer's own failure is no error of
    the fleet); with its list, us-east-9 is an error at the field, with the closest region."""
    fleet = REPO / "tests" / "data" / "broken" / "aws-region-unknown"
    with pytest.raises(FleetError) as refused:
        load_fleet(fleet, check=aws_regions.region_problems)
    said = [str(d) for d in refused.value.errors]
    assert said[0].endswith("broken.yaml:14: Pool/cloud-l4: spec.target.aws.region: 'us-east-9' is no AWS region "
                            "(did you mean us-east-2?): give the group's region, e.g. eu-west-1; placer checks it "
                            "against the regions botocore lists, so one AWS opened since needs a newer botocore (pip "
                            "install -U boto3)"), said
    monkeypatch.setattr(aws_regions, "known_regions", frozenset)
    assert load_fleet(fleet, check=aws_regions.region_problems).pools.keys() >= {"cloud-l4", "cloud-a10g"}


def test_a_state_bucket_behind_an_endpoint_keeps_any_region(tmp_path: Path) -> None:
    """An S3-compatible store (MinIO, moto) at an endpointUrl takes a region of its own naming: only
    AWS' own S3 is checked."""
    base = (REPO / "tests" / "data" / "valid" / "base" / "fleet.yaml").read_text()
    (tmp_path / "fleet.yaml").write_text(base + "\n---\napiVersion: placer.dev/v1alpha1\nkind: Settings\n"
                                         "metadata: {name: s}\nspec:\n  state: {backend: s3, bucket: b, key: k, "
                                         "region: local, endpointUrl: 'http://127.0.0.1:9000'}\n")
    assert load_fleet(tmp_path, check=aws_regions.region_problems).settings is not None
