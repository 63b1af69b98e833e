"""The GitOps pipeline end to end (examples/gitops): pull-request plans and merges that commit
the rendered tree into a local deploy repository, through the real script, CLI and git.

One module-scoped flow runs the story once (merge, pull request, merge, merge again); the
tests then check what each step left behind.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gitops"
PIPELINE = EXAMPLE / "pipeline.sh"
BIN = Path(sys.executable).parent
NOW = "2026-11-28T07:00:00Z"
K8S_VERSION = "1.33.0"  # kubernetes-validate ships schemas 1.25 to 1.37 offline

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("bash") is None,
                                reason="needs git and bash")


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PLACER": str(BIN / "placer"),
        "PYTHON": sys.executable,
        "PLACER_NOW": NOW,
        "HOME": str(home),  # no user git config
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com",
        "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.com",
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "",
    })
    return env


def run(env: dict[str, str], *args: str | Path, cwd: Path | None = None, ok: bool = True
        ) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(a) for a in args], cwd=cwd or env["HOME"], env=env, capture_output=True, text=True, timeout=120,
                       check=False)
    if ok and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def git(env: dict[str, str], repo: Path, *args: str) -> str:
    return run(env, "git", "-C", repo, *args).stdout.strip()


def tree_bytes(root: Path, skip: tuple[str, ...] = (".git", ".placer")) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in skip}


@dataclass
class Flow:
    env: dict[str, str]
    tmp: Path
    fleet: Path
    deploy: Path
    out: Path
    first: str  # deploy repo HEAD after the first merge
    first_files: list[str]
    pr: subprocess.CompletedProcess[str]
    second: str  # HEAD after merging the branch
    second_diff: list[str]
    second_message: str
    third: subprocess.CompletedProcess[str]
    third_head: str


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    tmp = tmp_path_factory.mktemp("gitops")
    env = environment(tmp)
    fleet_repo, deploy, out = tmp / "fleet-repo", tmp / "deploy", tmp / "out"
    shutil.copytree(EXAMPLE / "fleet", fleet_repo / "fleet")
    fleet = fleet_repo / "fleet"
    git(env, fleet_repo.parent, "init", "-q", "-b", "main", str(fleet_repo))
    git(env, fleet_repo, "add", "-A")
    git(env, fleet_repo, "commit", "-q", "-m", "fleet")
    git(env, tmp, "init", "-q", "-b", "main", str(deploy))

    # 1. the fleet lands on main: the deploy repository gets its first tree
    run(env, PIPELINE, "merge", fleet, deploy)
    first = git(env, deploy, "rev-parse", "HEAD")
    first_files = git(env, deploy, "ls-files").splitlines()

    # 2. a pull request doubles chat's demand... well, by half: 3,000 -> 4,500 tokens/s
    git(env, fleet_repo, "checkout", "-q", "-b", "more-chat")
    models = fleet / "models.yaml"
    text = models.read_text()
    assert text.count("rate: 3000") == 1
    models.write_text(text.replace("rate: 3000", "rate: 4500"))
    git(env, fleet_repo, "commit", "-q", "-am", "chat: more demand")
    pr = run(env, PIPELINE, "pr", fleet, out, deploy)

    # 3. the pull request is merged: a second commit
    git(env, fleet_repo, "checkout", "-q", "main")
    git(env, fleet_repo, "merge", "-q", "--no-ff", "-m", "merge more-chat", "more-chat")
    run(env, PIPELINE, "merge", fleet, deploy)
    second = git(env, deploy, "rev-parse", "HEAD")
    diff = git(env, deploy, "diff", "--name-only", first, second).splitlines()
    message = git(env, deploy, "log", "-1", "--format=%B")

    # 4. the pipeline runs again with nothing new: no commit
    third = run(env, PIPELINE, "merge", fleet, deploy)
    return Flow(env, tmp, fleet, deploy, out, first, first_files, pr, second, diff, message, third,
                git(env, deploy, "rev-parse", "HEAD"))


def test_first_merge_commits_the_whole_tree(flow: Flow) -> None:
    assert flow.first and git(flow.env, flow.deploy, "rev-list", "--count", flow.first) == "1"
    assert sorted(flow.first_files) == [
        ".placer/state.json",
        "clusters/eks-eu/embed-aws-euc1-l4.yaml",
        "clusters/eks-eu/kustomization.yaml",
        "clusters/onprem-fra/chat-fra-a100.yaml",
        "clusters/onprem-fra/kustomization.yaml",
        "terraform/placer.auto.tfvars.json",
    ]
    first_chat = yaml.safe_load(git(flow.env, flow.deploy, "show", f"{flow.first}:clusters/onprem-fra/chat-fra-a100.yaml"))
    assert first_chat["kind"] == "Deployment" and first_chat["spec"]["replicas"] == 2
    kust = yaml.safe_load(git(flow.env, flow.deploy, "show", f"{flow.first}:clusters/onprem-fra/kustomization.yaml"))
    assert kust["kind"] == "Kustomization" and kust["resources"] == ["chat-fra-a100.yaml"]
    tfvars = json.loads(git(flow.env, flow.deploy, "show", f"{flow.first}:terraform/placer.auto.tfvars.json"))
    assert tfvars["placer_pools"]["aws-euc1-l4"]["nodes"] == 1
    assert tfvars["placer_pools"]["aws-euc1-l4"]["aws"]["eks_nodegroup"] == "g6-12xlarge"
    assert "fra-a100" not in tfvars["placer_pools"]  # fixed on-prem capacity is not Terraform's


def test_pull_request_comment_shows_the_change_and_its_cost(flow: Flow) -> None:
    comment = (flow.out / "comment.md").read_text()
    plan = json.loads((flow.out / "plan.json").read_text())
    assert comment.startswith("<!-- placer-plan -->\n### placer plan")
    assert "**Plan: 0 to create, 1 to update, 0 to delete.**" in comment
    assert "~ deployment/chat@fra-a100 [phase 2] replicas 2 -> 3  # demand changed 3,000 -> 4,500" in comment
    # before: 4 A100 GPUs x 0.95 + one 4 x L4 node x 0.89 = 7.36; after: 6 x 0.95 + 3.56 = 9.26
    assert "Cost: **7.36 → 9.26 USD/h** (+1.90)" in comment
    assert [c["address"] for c in plan["changes"]] == ["deployment/chat@fra-a100"]
    assert plan["priorState"]["serial"] == 1  # planned against the state committed in the deploy repo
    changes = comment.split("```diff\n", 1)[1].split("```", 1)[0]
    assert changes.splitlines() == [
        "~ deployment/chat@fra-a100 [phase 2] replicas 2 -> 3  # demand changed 3,000 -> 4,500"]


def test_the_readme_quotes_the_pull_request_comment_as_placer_writes_it(flow: Flow) -> None:
    """The README shows this comment as "real `placer show plan.json --markdown` output"; it stopped
    at the changes, and the comment goes on with its placements. The same, but for the solve time."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quoted = readme.split("````markdown\n", 1)[1].split("````", 1)[0]
    comment = (flow.out / "comment.md").read_text(encoding="utf-8").removeprefix("<!-- placer-plan -->\n")

    def timeless(text: str) -> str:
        return re.sub(r"Solver: OPTIMAL in [0-9.]+ s", "Solver: OPTIMAL in _ s", text)

    assert timeless(quoted) == timeless(comment)


def test_merging_the_pull_request_commits_only_what_changed(flow: Flow) -> None:
    assert flow.second != flow.first
    assert git(flow.env, flow.deploy, "rev-parse", f"{flow.second}~1") == flow.first
    assert sorted(flow.second_diff) == [
        ".placer/state.json",
        "clusters/onprem-fra/chat-fra-a100.yaml",
        "terraform/placer.auto.tfvars.json",  # its placer_plan records the fleet digest and serial
    ]
    patch = git(flow.env, flow.deploy, "diff", flow.first, flow.second, "--", "clusters/")
    assert "-  replicas: 2" in patch and "+  replicas: 3" in patch
    assert patch.count("\n-") == 1 + 1 and patch.count("\n+") == 1 + 1  # the header lines and one replica line
    digest = json.loads((flow.out / "plan.json").read_text())["fleetDigest"]
    subject = flow.second_message.splitlines()[0]
    assert subject == f"placer: apply plan {digest[:len('sha256:') + 12]}"
    assert "~ deployment/chat@fra-a100  [phase 2] replicas 2 -> 3  # demand changed 3,000 -> 4,500" \
        in flow.second_message.splitlines(), flow.second_message
    state = json.loads((flow.deploy / ".placer" / "state.json").read_text())
    assert state["serial"] == 2 and state["deployments"]["chat@fra-a100"]["replicas"] == 3


def test_merge_without_changes_makes_no_commit(flow: Flow) -> None:
    assert flow.third_head == flow.second
    assert "no changes" in flow.third.stdout
    assert git(flow.env, flow.deploy, "status", "--porcelain") == ""


def test_render_is_byte_identical_and_matches_the_committed_tree(flow: Flow, tmp_path: Path) -> None:
    plan = flow.out / "plan.json"
    placer = str(BIN / "placer")
    one, two = tmp_path / "one", tmp_path / "two"
    run(flow.env, placer, "render", plan, "--out", one)
    run(flow.env, placer, "render", plan, "--out", two)
    first, second = tree_bytes(one), tree_bytes(two)
    assert first and first == second
    # the pull request's plan renders exactly what its merge committed
    assert first == tree_bytes(flow.deploy)


def test_rendered_deployments_pass_strict_kubernetes_validation(flow: Flow) -> None:
    exe = BIN / "kubernetes-validate"
    if not exe.exists():
        pytest.skip("kubernetes-validate is not installed (pip install -e '.[dev]')")
    manifests = sorted(p for p in (flow.deploy / "clusters").rglob("*.yaml") if p.name != "kustomization.yaml")
    assert len(manifests) == 2
    r = run(flow.env, exe, "--strict", "-k", K8S_VERSION, *manifests, ok=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("passed") == len(manifests)


def test_pull_request_with_an_invalid_fleet_explains_itself(flow: Flow, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(EXAMPLE / "fleet", fleet)
    pools = fleet / "pools.yaml"
    pools.write_text(pools.read_text().replace("usdPerGpuHour: 0.95", "usdPerGpuHuor: 0.95"))
    r = run(flow.env, PIPELINE, "pr", fleet, tmp_path / "out", ok=False)
    assert r.returncode == 1
    comment = (tmp_path / "out" / "comment.md").read_text()
    assert "### placer: the fleet is invalid" in comment
    assert "pools.yaml:" in comment and "usdPerGpuHuor" in comment and "did you mean 'usdPerGpuHour'" in comment
    assert not (tmp_path / "out" / "plan.json").exists()


def test_merge_refuses_a_dirty_deploy_repository(flow: Flow, tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    git(flow.env, tmp_path, "init", "-q", "-b", "main", str(deploy))
    (deploy / "notes.txt").write_text("not placer's\n")
    r = run(flow.env, PIPELINE, "merge", flow.fleet, deploy, ok=False)
    assert r.returncode == 1 and "uncommitted changes" in r.stderr
    r = run(flow.env, PIPELINE, "merge", flow.fleet, tmp_path / "nowhere", ok=False)
    assert r.returncode == 1 and "not a git repository" in r.stderr
    r = run(flow.env, PIPELINE, "deploy", ok=False)
    assert r.returncode == 1 and "pipeline.sh pr" in r.stderr


def test_merge_applies_the_reviewed_plan_while_it_is_current(flow: Flow, tmp_path: Path) -> None:
    """merge FLEET DEPLOY PLAN applies the pull request's plan itself, not a fresh one (a large
    fleet's plans differ from run to run: bench M, planned twice, put 336 of about 1,000
    placements elsewhere); a plan made from another fleet, or against a state another merge has
    moved on, is out of date: the merge says so and plans afresh. Which plan was applied shows in
    the tree: the reviewed plan here is edited to 4 chat replicas, where a fresh plan makes 3."""
    env = flow.env
    fleet, deploy = tmp_path / "fleet", tmp_path / "deploy"
    shutil.copytree(EXAMPLE / "fleet", fleet)
    git(env, tmp_path, "init", "-q", "-b", "main", str(deploy))
    run(env, PIPELINE, "merge", fleet, deploy)
    models = fleet / "models.yaml"
    models.write_text(models.read_text().replace("rate: 3000", "rate: 4500"))
    run(env, PIPELINE, "pr", fleet, tmp_path / "out", deploy)
    reviewed = tmp_path / "out" / "plan.json"
    plan = json.loads(reviewed.read_text())
    (chat,) = [c for c in plan["changes"] if c["address"] == "deployment/chat@fra-a100"]
    assert chat["after"] == {"replicas": 3}
    chat["after"]["replicas"] = 4
    for p in plan["placements"]:
        if (p["model"], p["pool"]) == ("chat", "fra-a100"):
            p["replicas"], p["gpus"] = 4, 4 * p["gpus"] // 3
    edited = tmp_path / "reviewed.json"
    edited.write_text(json.dumps(plan))

    def chat_replicas() -> int:
        return int(yaml.safe_load(git(env, deploy, "show", "HEAD:clusters/onprem-fra/chat-fra-a100.yaml"))
                   ["spec"]["replicas"])

    # out of date: the fleet changed after the review (a comment edited in is no change: same digest)
    models.write_text(models.read_text() + "\n# reviewed\n")
    pools = fleet / "pools.yaml"
    # and a selector validate warns of: the warning comes first on apply's stderr, the refusal after it
    by_group = ("placer.dev/pool: aws-euc1-l4", "eks.amazonaws.com/nodegroup: g6-12xlarge")
    pools.write_text(pools.read_text().replace("usdPerGpuHour: 0.95", "usdPerGpuHour: 0.96").replace(*by_group))
    head = git(env, deploy, "rev-parse", "HEAD")
    dry = tmp_path / "dry"
    shutil.copytree(deploy, dry)
    r = run(env, PIPELINE, "merge", fleet, dry, edited)
    assert "the reviewed plan is out of date, planning afresh" in r.stderr and "another version of" in r.stderr
    assert git(env, dry, "log", "-1", "--format=%s").startswith("placer: apply plan sha256:")
    pools.write_text(pools.read_text().replace("usdPerGpuHour: 0.96", "usdPerGpuHour: 0.95").replace(*by_group[::-1]))

    # current: applied as reviewed
    r = run(env, PIPELINE, "merge", fleet, deploy, edited)
    assert f"applied the reviewed plan {edited}" in r.stdout
    assert git(env, deploy, "log", "-1", "--format=%s").startswith("placer: apply reviewed plan sha256:")
    assert chat_replicas() == 4 and git(env, deploy, "rev-parse", "HEAD~1") == head
    state = json.loads((deploy / ".placer" / "state.json").read_text())
    assert state["serial"] == 2

    # out of date: the state moved on (the same plan again, as after a second merge landed)
    r = run(env, PIPELINE, "merge", fleet, deploy, edited)
    assert "the reviewed plan is out of date, planning afresh" in r.stderr and "stale plan" in r.stderr
    assert chat_replicas() == 3  # the fresh plan's

    # a damaged plan is an error, not a reason to plan afresh
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    r = run(env, PIPELINE, "merge", fleet, deploy, bad, ok=False)
    assert r.returncode == 1 and "not a plan file" in r.stderr
    r = run(env, PIPELINE, "merge", fleet, deploy, tmp_path / "missing.json", ok=False)
    assert r.returncode == 1 and "reviewed plan" in r.stderr and "not found" in r.stderr


def test_merge_refuses_a_live_mode_fleet_or_plan_and_calls_no_cloud(flow: Flow, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(EXAMPLE / "fleet", fleet)
    settings = fleet / "settings.yaml"
    settings.write_text(settings.read_text().replace("mode: gitops", "mode: live"))
    deploy = tmp_path / "deploy"
    git(flow.env, tmp_path, "init", "-q", "-b", "main", str(deploy))
    run(flow.env, BIN / "placer", "plan", fleet, "-o", tmp_path / "live.json", "--state", tmp_path / "s.json")
    for extra in ((), (tmp_path / "live.json",)):
        r = run(flow.env, PIPELINE, "merge", fleet, deploy, *extra, ok=False)
        assert r.returncode == 1 and "merge commits a GitOps tree: set Settings apply.mode: gitops" in r.stderr
        assert git(flow.env, deploy, "status", "--porcelain") == "" and not (deploy / ".placer").exists()


def test_apply_refuses_a_plan_made_from_another_fleet(flow: Flow, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(EXAMPLE / "fleet", fleet)
    plan = tmp_path / "plan.json"
    run(flow.env, BIN / "placer", "plan", fleet, "-o", plan, "--state", tmp_path / "state.json")
    pools = fleet / "pools.yaml"
    pools.write_text(pools.read_text().replace("usdPerGpuHour: 0.95", "usdPerGpuHour: 0.96"))
    r = run(flow.env, BIN / "placer", "apply", plan, "--fleet", fleet, "--state", tmp_path / "state.json", ok=False)
    assert r.returncode == 1 and f"{plan} was made from another version of {fleet}" in " ".join(r.stderr.split())
    assert "nothing was applied" in r.stderr and not (tmp_path / "state.json").exists()
    r = run(flow.env, BIN / "placer", "apply", fleet, "--fleet", fleet, ok=False)
    assert r.returncode == 1 and "--fleet checks a saved plan" in r.stderr


def test_github_workflow_runs_the_same_steps() -> None:
    workflow = yaml.safe_load((EXAMPLE / ".github" / "workflows" / "placer.yml").read_text())
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(on) >= {"pull_request", "push"} and on["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    plan_runs = "\n".join(s.get("run", "") for s in jobs["plan"]["steps"])
    for command in ("placer policy test", "placer validate", "placer plan", "-o out/plan.json",
                    "placer show out/plan.json --markdown"):
        assert command in plan_runs
    assert any(s.get("uses", "").startswith("actions/github-script") for s in jobs["plan"]["steps"])
    assert jobs["plan"]["permissions"]["pull-requests"] == "write"
    gitops_runs = "\n".join(s.get("run", "") for s in jobs["gitops"]["steps"])
    assert "./pipeline.sh merge" in gitops_runs and "git -C deploy push" in gitops_runs
    # the merge applies the pull request's own plan: the artifact the plan job uploads, by name
    (upload,) = [s for s in jobs["plan"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload["with"]["name"] == "placer-plan-${{ github.event.pull_request.number }}"
    assert upload["with"]["path"] == "out/plan.json"
    # ... before the comment is written, which links it: a cut comment's note says where the whole plan is
    steps = jobs["plan"]["steps"]
    (show,) = [i for i, s in enumerate(steps) if "placer show out/plan.json --markdown" in s.get("run", "")]
    assert steps.index(upload) < show and upload["id"] == "artifact"
    assert steps[show]["env"]["PLAN_URL"] == "${{ steps.artifact.outputs.artifact-url }}"
    assert 'url=(--plan-url "$PLAN_URL")' in steps[show]["run"] and '--markdown "${url[@]}"' in steps[show]["run"]
    assert 'gh run download "$run" -n "placer-plan-$pr" -D reviewed' in gitops_runs
    assert 'reviewed=(reviewed/plan.json)' in gitops_runs and './pipeline.sh merge "$FLEET" deploy "${reviewed[@]}"' \
        in gitops_runs
    assert jobs["gitops"]["permissions"] == {"contents": "read", "actions": "read", "pull-requests": "read"}
    live_runs = "\n".join(s.get("run", "") for s in jobs["live"]["steps"])
    assert "placer apply plan.json" in live_runs
    for job in ("gitops", "live"):
        assert jobs[job]["concurrency"] == {"group": "placer-apply", "cancel-in-progress": False}
    # placer is installed from where the repository's variable says: `pip install placer==0.1.0` asked
    # PyPI, whose package named placer is another project's (0.0.7 at most: the job failed there)
    assert workflow["env"]["PLACER_PIP_SPEC"] == "${{ vars.PLACER_PIP_SPEC }}"
    for job in ("plan", "gitops", "live"):
        (install,) = [s["run"] for s in jobs[job]["steps"] if s.get("name") == "Install placer"]
        assert '[ -n "$PLACER_PIP_SPEC" ] ||' in install and "::error::set the Actions variable PLACER_PIP_SPEC" \
            in install and install.rstrip().endswith('pip install "$PLACER_PIP_SPEC"'), install


def test_the_commit_says_each_change_as_the_plan_comment_does(flow: Flow, tmp_path: Path) -> None:
    """A pool's new namespace replaces chat's Deployment; the merge's commit described its changes
    in words of its own: `context 0 -> onprem-fra`, `namespace inference -> 0`, and `replacedBy
    {'context': ...} -> 0` (a Python dict). It says them as placer does, with the reason, as the
    comment and `placer show` do."""
    fleet, deploy = tmp_path / "fleet", tmp_path / "deploy"
    shutil.copytree(EXAMPLE / "fleet", fleet)
    git(flow.env, tmp_path, "init", "-q", "-b", "main", str(deploy))
    run(flow.env, PIPELINE, "merge", fleet, deploy)
    pools = fleet / "pools.yaml"
    pools.write_text(pools.read_text().replace("namespace: inference", "namespace: team-b", 1))
    run(flow.env, PIPELINE, "merge", fleet, deploy)
    body = git(flow.env, deploy, "log", "-1", "--format=%b").splitlines()
    changes = [line for line in body if line[:2] in ("+ ", "- ", "~ ")]
    assert changes == [
        "+ deployment/chat@fra-a100  [phase 2] context onprem-fra, namespace team-b, replicas 2  # replaces the one "
        "in namespace inference of context onprem-fra, which is deleted once this one is healthy",
        "- deployment/chat@fra-a100  [phase 3] context onprem-fra, namespace inference, replicas 2 -> 0  # replaced "
        "by the one in namespace team-b of context onprem-fra"], body
    assert "Cost: 7.36 -> 7.36 USD/h" in body, body


def test_a_reviewed_plan_without_changes_makes_no_commit(flow: Flow, tmp_path: Path) -> None:
    """A pull request whose comment said "No changes" (a label, a description): its merge applied
    the plan's nothing, rendered it, and committed "apply reviewed plan" with no change in it, the
    tfvars' placer_plan alone rewritten (Terraform then retags every node group). Nothing to change
    makes no commit, and leaves the deploy repository clean, as a fresh plan's nothing does."""
    fleet, deploy, out = tmp_path / "fleet", tmp_path / "deploy", tmp_path / "out"
    shutil.copytree(EXAMPLE / "fleet", fleet)
    git(flow.env, tmp_path, "init", "-q", "-b", "main", str(deploy))
    run(flow.env, PIPELINE, "merge", fleet, deploy)
    head = git(flow.env, deploy, "rev-parse", "HEAD")
    models = fleet / "models.yaml"
    models.write_text(models.read_text().replace("team: assistant", "team: assistants", 1))
    run(flow.env, PIPELINE, "pr", fleet, out, deploy)
    assert json.loads((out / "plan.json").read_text())["changes"] == []
    r = run(flow.env, PIPELINE, "merge", fleet, deploy, out / "plan.json")
    assert "no changes" in r.stdout, r.stdout + r.stderr
    assert git(flow.env, deploy, "rev-parse", "HEAD") == head
    assert git(flow.env, deploy, "status", "--porcelain") == ""


def test_a_pull_requests_plan_shows_its_progress_in_the_log_as_it_plans(tmp_path: Path) -> None:
    """`pipeline.sh pr` sent the plan's stderr to a file and printed it once the plan had ended: its
    "Still planning… [10s elapsed; …]" lines, a line every 10 s, reached the CI log all at once at
    the end (a bench L plan: 45 s with nothing in the log). They come as the plan prints them, and
    once. A stand-in for placer prints such a line, then waits for the test to have seen it."""
    go = tmp_path / "go"
    fake = tmp_path / "slow-placer"
    fake.write_text(f"""#!/usr/bin/env bash
if [ "$1" = plan ]; then
    echo "Still planning… [10s elapsed; now: the LP by column generation]" >&2
    for _ in $(seq 900); do [ -e {shlex.quote(str(go))} ] && break; sleep 0.1; done
fi
exec {shlex.quote(str(BIN / "placer"))} "$@"
""")
    fake.chmod(0o755)
    fleet, out = tmp_path / "fleet", tmp_path / "out"
    shutil.copytree(EXAMPLE / "fleet", fleet)
    env = {**environment(tmp_path), "PLACER": str(fake)}
    proc = subprocess.Popen([str(PIPELINE), "pr", str(fleet), str(out)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr or ()], daemon=True)
    reader.start()
    try:
        seen = []
        while not any(line.startswith("Still planning… [10s elapsed") for line in seen):
            seen.append(lines.get(timeout=60))  # Empty: the line waits for the plan's end
    finally:
        go.touch()
        stdout, _ = proc.communicate(timeout=120)
    reader.join(timeout=10)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert proc.returncode == 0, "".join(seen + rest)
    assert sum(line.startswith("Still planning…") for line in seen + rest) == 1  # not said again at the end
    assert "wrote" in stdout and (out / "comment.md").read_text().startswith("<!-- placer-plan -->\n### placer plan")
    assert "Still planning" in (out / "plan-errors.txt").read_text()  # kept for a failed plan's comment


def test_a_cut_comment_names_the_plan_as_the_reviewer_gets_it(tmp_path: Path) -> None:
    """A plan too long for a comment is cut, its note saying where the rest is: `pipeline.sh pr`
    named the plan by the runner's absolute path (`placer show /home/runner/work/…/out/plan.json`),
    which no reviewer has. It names OUT_DIR/plan.json as the caller gave it, and with
    PLACER_PLAN_URL (the job's artifact) links it. A stand-in placer cuts the comment at 770
    characters, as GitHub's limit cuts a large fleet's."""
    fake = tmp_path / "short-comment-placer"
    fake.write_text(f"""#!/usr/bin/env bash
if [ "$1" = show ]; then exec {shlex.quote(str(BIN / "placer"))} "$@" --max-chars 770; fi
exec {shlex.quote(str(BIN / "placer"))} "$@"
""")
    fake.chmod(0o755)
    shutil.copytree(EXAMPLE / "fleet", tmp_path / "fleet")
    env = {**environment(tmp_path), "PLACER": str(fake)}
    run(env, PIPELINE, "pr", "fleet", "out", cwd=tmp_path)
    comment = (tmp_path / "out" / "comment.md").read_text()
    assert "not shown" in comment and "`placer show out/plan.json` prints them all._" in comment, comment
    assert str(tmp_path) not in comment
    url = "https://github.com/acme/fleet/actions/runs/7/artifacts/9"
    run({**env, "PLACER_PLAN_URL": url}, PIPELINE, "pr", "fleet", "out", cwd=tmp_path)
    comment = (tmp_path / "out" / "comment.md").read_text()
    assert f"`placer show plan.json` ([download plan.json]({url})) prints them all._" in comment, comment
