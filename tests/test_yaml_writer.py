"""Every YAML file placer writes reads back as written under placer's YAML 1.2 loader and under
YAML 1.1 (PyYAML's SafeLoader): text that looks like a number is quoted for both."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from placer.render.tree import kustomization_text, manifest_text
from placer.spec.source import parse_text
from placer.spec.writer import dump, dump_all

# text PyYAML's SafeDumper writes plain and YAML 1.2 reads as a number, and what 1.1 misreads
TRICKY = ["1e6", "1E6", "1e+6", "1.5e3", "-.5e3", "0o10", "0o17", "1e-3", "12e4", "8e1", "1e1", "1e3",
          "010", "0x1F", ".5", "1.", "yes", "no", "on", "off", "y", "N", "True", "FALSE", "null", "~", "",
          "1_000", "1:30", "2026-01-01", "1.10", "007", "+1", "-0", ".inf", "-.Inf", ".NaN", "0b101", "e6",
          "1e", "x", "a b", " lead", "trail ", "#c", "- x", "a: b", "multi\nline", "tab\there", "ünï"]
texts = st.one_of(st.sampled_from(TRICKY), st.text(), st.from_regex(r"[-+]?[0-9._eEoxXa-f:]{1,8}", fullmatch=True))


def read_12(text: str) -> object:
    docs, diags = parse_text(text, "written.yaml")
    assert not diags, diags
    return docs[0].data


@settings(max_examples=400, deadline=None)
@given(st.lists(texts, min_size=1, max_size=6))
def test_any_text_reads_back_as_written_in_yaml_1_2_and_1_1(values: list[str]) -> None:
    doc = {"labels": {f"k{i}": v for i, v in enumerate(values)}, "items": values,
           "keys": {v: i for i, v in enumerate(values)}, "flow": [{"value": v} for v in values]}
    for text in (dump(doc, sort_keys=False), dump(doc, default_flow_style=True, allow_unicode=True, width=20)):
        assert read_12(text) == doc, text
        assert yaml.safe_load(text) == doc, text


def test_every_tricky_text_is_quoted_where_yaml_1_2_or_1_1_would_misread_it() -> None:
    text = dump_all([{"v": v} for v in TRICKY])
    docs, diags = parse_text(text, "written.yaml")
    assert not diags
    assert [d.data["v"] for d in docs] == TRICKY
    assert [d["v"] for d in yaml.safe_load_all(text)] == TRICKY
    assert "v: '8e1'" in text and "v: '0o10'" in text and "v: 'y'" in text and "v: x\n" in text


TARGET = {"model": "chat", "pool": "p", "version": "1e3", "gpus": 1,
          "kubernetes": {"context": "c", "namespace": "default", "nodeSelector": {"acme.io/group": "8e1"},
                         "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "0o10",
                                          "effect": "NoSchedule"}]}}


def _planned(doc: object) -> tuple[object, object, object]:
    assert isinstance(doc, dict)
    pod = doc["spec"]["template"]["spec"]
    return (doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"], pod["nodeSelector"]["acme.io/group"],
            pod["tolerations"][0]["value"])


def test_a_rendered_manifest_keeps_its_text_values_under_yaml_1_2(tmp_path: Path) -> None:
    """kubectl kustomize, Argo CD and Flux read YAML 1.2: a nodeSelector 8e1, a toleration 0o10 and
    a version 1e3 written plain were the numbers 80, 8 and 1000, not the planned values."""
    text = manifest_text(TARGET, 2)
    assert _planned(read_12(text)) == ("1e3", "8e1", "0o10")
    assert _planned(yaml.safe_load(text)) == ("1e3", "8e1", "0o10")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on the PATH")
    (tmp_path / "chat.yaml").write_text(text)
    (tmp_path / "kustomization.yaml").write_text(kustomization_text(["chat.yaml"]))
    out = subprocess.run([kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _planned(read_12(out.stdout)) == ("1e3", "8e1", "0o10")
