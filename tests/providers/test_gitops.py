"""The gitops provider's kustomizations: written once per phase (finish), listing exactly the
folder's manifests, and repaired where an interrupted apply left one behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from placer.planfile import Change
from placer.render.tree import kustomization_text
from providers.base import ProviderError
from providers.gitops import GitOpsProvider


def change(model: str, context: str, replicas: int | None = 2) -> Change:
    target: dict[str, Any] = {"provider": "kubernetes", "pool": "h100", "model": model, "gpus": 1,
                              "gpuType": "H100-80GB", "image": f"registry.local/models/{model}:1", "version": "1",
                              "kubernetes": {"context": context, "namespace": "models"}}
    return Change(address=f"deployment/{model}@h100", action="create" if replicas else "delete",  # type: ignore[arg-type]
                  phase=2 if replicas else 3, before=None, after={"replicas": replicas} if replicas else None,
                  target=target)


def listed(folder: Path) -> list[str]:
    return list(yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"])


def test_kustomizations_are_written_when_the_phase_ends(tmp_path: Path) -> None:
    provider = GitOpsProvider(tmp_path)
    for n in range(3):
        provider.apply(change(f"m{n}", "a"))
    folder = tmp_path / "clusters" / "a"
    assert sorted(p.name for p in folder.iterdir()) == ["m0-h100.yaml", "m1-h100.yaml", "m2-h100.yaml"]
    provider.finish()
    assert listed(folder) == ["m0-h100.yaml", "m1-h100.yaml", "m2-h100.yaml"]
    provider.apply(change("m1", "a", replicas=None))
    provider.finish()
    assert listed(folder) == ["m0-h100.yaml", "m2-h100.yaml"]
    for n in (0, 2):
        provider.apply(change(f"m{n}", "a", replicas=None))
    provider.finish()
    assert not folder.exists(), "a folder left without manifests goes, kustomization and all"


def test_a_yml_manifest_beside_placers_is_listed_in_the_kustomization(tmp_path: Path) -> None:
    """A namespace.yml put beside placer's manifests is listed, as a namespace.yaml is: it was left
    out of the kustomization, so the pipeline stopped applying it."""
    folder = tmp_path / "clusters" / "a"
    folder.mkdir(parents=True)
    (folder / "namespace.yml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: models}\n")
    provider = GitOpsProvider(tmp_path)
    provider.apply(change("m0", "a"))
    provider.finish()
    assert listed(folder) == ["m0-h100.yaml", "namespace.yml"]
    provider.apply(change("m0", "a", replicas=None))
    provider.finish()
    assert listed(folder) == ["namespace.yml"]


def test_a_kustomization_an_interrupted_apply_left_behind_is_repaired(tmp_path: Path) -> None:
    """Killed between a manifest and its phase's end: the next provider's first change rewrites
    the stale kustomization, though that change is in another folder; a right one is left alone."""
    first = GitOpsProvider(tmp_path)
    first.apply(change("m0", "a"))
    first.apply(change("ok", "c"))
    first.finish()
    first.apply(change("m1", "a"))  # ... and the process is killed here: no finish
    stale, right = tmp_path / "clusters" / "a", tmp_path / "clusters" / "c"
    assert listed(stale) == ["m0-h100.yaml"]
    before = (right / "kustomization.yaml").stat().st_mtime_ns
    second = GitOpsProvider(tmp_path)
    second.apply(change("m2", "b"))
    second.finish()
    assert listed(stale) == ["m0-h100.yaml", "m1-h100.yaml"]
    assert listed(tmp_path / "clusters" / "b") == ["m2-h100.yaml"]
    assert (right / "kustomization.yaml").stat().st_mtime_ns == before
    assert (stale / "kustomization.yaml").read_text() == kustomization_text(["m0-h100.yaml", "m1-h100.yaml"])


def test_a_replacements_delete_at_the_place_its_create_wrote_deletes_nothing(tmp_path: Path) -> None:
    """No context and the context named default are one folder: a plan from before they were
    compared so (or edited by hand) replaced the Deployment there, and its delete removed the file
    its create had just written, the only copy."""
    provider = GitOpsProvider(tmp_path)
    new = change("m", "default")
    provider.apply(new)
    old_target = {**new.target, "kubernetes": {"namespace": "models"}}  # no context
    delete = Change(address="deployment/m@h100", action="delete", phase=3,
                    before={"replicas": 2, "context": None, "namespace": "models",
                            "replacedBy": {"context": "default", "namespace": "models"}},
                    after=None, target=old_target)
    provider.apply(delete)
    provider.finish()
    assert (tmp_path / "clusters" / "default" / "m-h100.yaml").exists()
    assert provider.observe(delete) is None and provider.observe(new) == {"replicas": 2}
    # a delete at another namespace of the folder still deletes its own copy alone
    elsewhere = Change(address="deployment/m@h100", action="delete", phase=3,
                       before={"replicas": 2, "context": "default", "namespace": "models",
                               "replacedBy": {"context": "default", "namespace": "other"}},
                       after=None, target=new.target)
    provider.apply(elsewhere)
    provider.finish()
    assert not (tmp_path / "clusters" / "default").exists()


def pool_change(nodes: int = 2) -> Change:
    target = {"provider": "aws", "pool": "h100", "aws": {"region": "eu-west-1", "autoScalingGroupName": "h100"}}
    return Change(address="pool/h100", action="create", phase=1, before=None, after={"nodes": nodes},
                  target=target)


def test_the_tree_is_never_written_through_a_symbolic_link(tmp_path: Path) -> None:
    """A link inside the tree led the apply outside it: a manifest that was a link to a file
    outside overwrote that file, and a cluster folder that was a link to another folder got the
    manifests and a kustomization there (listing every *.yaml found there). Each is refused,
    naming the link, and nothing outside is touched."""
    import pytest

    from providers.base import ProviderError

    root, outside = tmp_path / "deploy", tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.yaml"
    victim.write_text("precious: data\n")
    (outside / "other.yaml").write_text("theirs: true\n")
    folder = root / "clusters" / "a"
    folder.mkdir(parents=True)

    (folder / "m0-h100.yaml").symlink_to(victim)
    with pytest.raises(ProviderError, match=r"clusters/a/m0-h100\.yaml is a symbolic link \(to .*victim\.yaml\)"):
        GitOpsProvider(root).apply(change("m0", "a"))
    with pytest.raises(ProviderError, match="symbolic link"):
        GitOpsProvider(root).apply(change("m0", "a", replicas=None))
    assert victim.read_text() == "precious: data\n" and (folder / "m0-h100.yaml").is_symlink()

    (folder / "m0-h100.yaml").unlink()
    folder.rmdir()
    folder.symlink_to(outside)
    provider = GitOpsProvider(root)
    provider.mend()
    provider.finish()  # a linked folder is no folder of placer's: its kustomization is not written
    with pytest.raises(ProviderError, match=r"clusters/a is a symbolic link"):
        provider.apply(change("m0", "a"))
    provider.finish()
    assert sorted(p.name for p in outside.iterdir()) == ["other.yaml", "victim.yaml"]

    folder.unlink()
    folder.mkdir()
    provider = GitOpsProvider(root)
    provider.apply(change("m0", "a"))
    (folder / "kustomization.yaml").symlink_to(victim)
    with pytest.raises(ProviderError, match=r"kustomization\.yaml is a symbolic link"):
        provider.finish()
    assert victim.read_text() == "precious: data\n"
    # an apply's first step (``mend``) said it restored it, then refused to write it
    again = GitOpsProvider(root)
    assert not [n for n in again.mend() if "restored" in n]
    with pytest.raises(ProviderError, match=r"kustomization\.yaml is a symbolic link"):
        again.finish()
    assert victim.read_text() == "precious: data\n"

    (root / "terraform").symlink_to(outside)
    with pytest.raises(ProviderError, match=r"terraform is a symbolic link"):
        GitOpsProvider(root).apply(pool_change())
    assert sorted(p.name for p in outside.iterdir()) == ["other.yaml", "victim.yaml"]


def test_a_kustomization_or_tfvars_of_bytes_no_placer_writes_is_mended_or_named(tmp_path: Path) -> None:
    """A kustomization that is no UTF-8, or YAML nested deeper than Python recurses, failed every
    gitops apply, "No changes" included, with Python's words and no file named ("'utf-8' codec can't
    decode byte 0xff", "maximum recursion depth exceeded"): placer owns the file and restores it.
    Tfvars so damaged are named, with what to do."""
    first = GitOpsProvider(tmp_path)
    first.apply(change("m0", "a"))
    first.apply(change("m1", "b"))
    first.finish()
    (tmp_path / "clusters" / "a" / "kustomization.yaml").write_bytes(b"\xff\xfe\x00resources: [x]\n")
    (tmp_path / "clusters" / "b" / "kustomization.yaml").write_text("[" * 100_000 + "]" * 100_000)
    second = GitOpsProvider(tmp_path)
    notes = second.mend()
    assert len(notes) == 2 and all(n.startswith("restored ") for n in notes), notes
    second.finish()
    assert listed(tmp_path / "clusters" / "a") == ["m0-h100.yaml"]
    assert listed(tmp_path / "clusters" / "b") == ["m1-h100.yaml"]

    pool = Change(address="pool/p", action="update", phase=1, before={"nodes": 1}, after={"nodes": 2},
                  target={"provider": "aws", "pool": "p", "minNodes": 0, "maxNodes": 4, "gpuType": "L4-24GB",
                          "gpusPerNode": 4, "spot": False, "aws": {"region": "eu-west-1", "autoScalingGroupName": "g"}})
    tfvars = tmp_path / "terraform" / "placer.auto.tfvars.json"
    tfvars.parent.mkdir()
    for damage, said in ((b"\xff{}", "not UTF-8 text"), (b"[" * 100_000 + b"]" * 100_000, "nested too deeply")):
        tfvars.write_bytes(damage)
        with pytest.raises(ProviderError) as caught:
            GitOpsProvider(tmp_path).apply(pool)
        assert str(caught.value).startswith(f"{tfvars}: ") and said in str(caught.value), caught.value
        assert "fix or remove it before applying" in str(caught.value)
        assert tfvars.read_bytes() == damage


@pytest.mark.parametrize(("damage", "said"), [
    (b"\xff\xfe", "not UTF-8 text"), (b"[" * 100_000 + b"]" * 100_000, "YAML nested too deeply to read"),
    (b"a: [\n", "not YAML"),
    (b"kind: Deployment\nmetadata: {namespace: models}\nspec: {replicas: many}\n",
     "its spec.replicas is 'many', not a count"),
])
def test_a_manifest_placer_did_not_write_so_is_named_not_failed_in_pythons_words(
        tmp_path: Path, damage: bytes, said: str) -> None:
    """A deployment's manifest damaged in the tree (not UTF-8, not YAML, nested too deeply, no count
    of replicas): its delete or its check after a change failed the apply with Python's words and no
    file named, a YAML error's over several lines."""
    first = GitOpsProvider(tmp_path)
    first.apply(change("m0", "a"))
    first.finish()
    manifest = tmp_path / "clusters" / "a" / "m0-h100.yaml"
    manifest.write_bytes(damage)
    checks = [(change("m0", "a"), "observe")]
    if b"replicas" not in damage:  # a delete reads no count: it removes the file that holds the copy
        checks.append((change("m0", "a", replicas=None), "apply"))
    for c, act in checks:
        with pytest.raises(ProviderError) as caught:
            getattr(GitOpsProvider(tmp_path), act)(c)
        message = str(caught.value)
        assert message.startswith(f"{manifest}: ") and said in message and "\n" not in message, message
        assert "not the manifest placer writes for deployment/m0@h100; fix or remove it before applying" in message
    assert manifest.read_bytes() == damage
