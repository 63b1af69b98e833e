#!/usr/bin/env bash
# placer in any CI system: plan a pull request, or carry out a merge by committing the GitOps tree.
#
#   pipeline.sh pr    FLEET OUT_DIR [DEPLOY_REPO_DIR]
#       validate FLEET, plan it, write OUT_DIR/plan.json and OUT_DIR/comment.md (Markdown for the
#       pull-request comment: a long plan's is cut, its note naming OUT_DIR/plan.json or linking
#       PLACER_PLAN_URL). With DEPLOY_REPO_DIR (a read-only checkout of the deploy repository) the
#       plan is diffed against the state committed there, so the comment shows what the merge
#       would change; without it, against the fleet's own Settings state.
#   pipeline.sh merge FLEET DEPLOY_REPO_DIR [REVIEWED_PLAN]
#       plan FLEET against the state in DEPLOY_REPO_DIR; when something changes, apply the plan
#       there (gitops mode records the state and writes manifests and tfvars), render the whole
#       tree with `placer render`, and commit: "placer: apply plan <fleet digest>". Nothing
#       changes: no commit. Pushing is the caller's job (git -C DEPLOY_REPO_DIR push).
#       With REVIEWED_PLAN (the pull request's plan.json): apply that plan, exactly what the
#       comment showed, while it is current (made from this FLEET, against the state the deploy
#       repository holds); else say why and plan afresh. A large fleet's plans differ from run
#       to run in detail (the solver searches within a time limit), so a fresh plan may not be
#       the one that was reviewed. A reviewed plan without changes is not applied: the fleet
#       is planned afresh, and nothing to change makes no commit.
#
# The fleet must be in gitops mode (Settings apply.mode: gitops). Settings' state path and
# apply.directory are read relative to the deploy repository's root: the state file is
# committed next to the tree it describes, so plan, tree and state never disagree.
#
# Environment: PLACER (the placer command; default: placer), PYTHON (default: python3),
#   PLACER_NOW (the plan time, ISO, for reproducible retire policies; default: now),
#   PLACER_STATE (the state file inside the deploy repository; default: .placer/state.json),
#   PLACER_PLAN_URL (pr: where the comment's readers download OUT_DIR/plan.json, kept as the job's
#   artifact; the comment's note on the rows it cut links it).
# Exit: 0 ok (pr: comment written; merge: committed, or nothing to do), 1 error.
set -euo pipefail

PLACER=${PLACER:-placer}
PYTHON=${PYTHON:-python3}
STATE_REL=${PLACER_STATE:-.placer/state.json}
MARKER='<!-- placer-plan -->'

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 1
}

die() {
    echo "pipeline.sh: $*" >&2
    exit 1
}

abspath() {  # an absolute path for $1, which may not exist yet
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$(pwd -P)" "$1" ;;
    esac
}

now_args=()
if [ -n "${PLACER_NOW:-}" ]; then now_args=(--now "$PLACER_NOW"); fi

# stderr_into FILE CMD...: CMD with its stderr shown as it comes and kept in FILE too; CMD's exit
# status. Sent to FILE alone, a plan's progress ("Still planning… [10s elapsed; …]", a line every
# 10 s) reached the CI log only once the plan had ended: a bench L plan's log was silent for 45 s.
stderr_into() {
    local file=$1
    shift
    { "$@" 2>&1 1>&3 3>&- | tee "$file" >&2; } 3>&1  # pipefail: CMD's status, where tee's is 0
}

# plan_field PLAN FIELD: one fact from a plan file (digest, short-digest, count, mode, directory, cost).
plan_field() {
    "$PYTHON" - "$1" "$2" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1], encoding="utf-8"))
what = sys.argv[2]
apply = plan.get("settings", {}).get("apply", {})
if what == "digest":
    print(plan["fleetDigest"])
elif what == "short-digest":
    algo, _, hexdigest = plan["fleetDigest"].partition(":")
    print(f"{algo}:{hexdigest[:12]}")
elif what == "count":
    print(len(plan.get("changes", [])))
elif what == "mode":
    print(apply.get("mode", "live"))
elif what == "directory":
    print(apply.get("directory", "deploy"))
elif what == "cost":
    cost = plan.get("cost", {}).get("totalUsdPerHour")
    before = plan.get("costBeforeUsdPerHour")
    if cost is not None:
        print(f"Cost: {'%.2f' % before if isinstance(before, (int, float)) else 'n/a'} -> {cost:.2f} USD/h")
PY
}

# plan_changes PLAN: the plan's changes as placer says them (`placer show`), a line each with its reason,
# as the pull-request comment shows them (words of this script's own said a replacement's context
# "0 -> onprem-fra" and printed its replacedBy as a Python dict)
plan_changes() {
    "$PLACER" show "$1" | sed -n '/^Changes (make before break):$/,/^$/s/^  //p'
}

# -------------------------------------------------------------------- pr

pr() {
    [ $# -ge 2 ] && [ $# -le 3 ] || usage
    local fleet out deploy named
    fleet=$(abspath "$1")
    named=${2%/}/plan.json  # as the caller named it: the comment's note said the runner's absolute path
    out=$(abspath "$2")
    deploy=${3:-}
    [ -d "$fleet" ] || die "fleet directory $1 not found"
    mkdir -p "$out"
    rm -f "$out/plan.json" "$out/comment.md"
    local state_args=()
    if [ -n "$deploy" ]; then
        [ -d "$deploy" ] || die "deploy repository $deploy not found"
        state_args=(--state "$(abspath "$deploy")/$STATE_REL")
    fi

    if ! stderr_into "$out/validate.txt" "$PLACER" validate "$fleet"; then
        {
            echo "$MARKER"
            echo "### placer: the fleet is invalid"
            echo
            echo '```'
            sed "s|$fleet/||g" "$out/validate.txt"
            echo '```'
        } > "$out/comment.md"
        die "the fleet is invalid; see $out/comment.md"
    fi

    if ! stderr_into "$out/plan-errors.txt" "$PLACER" plan "$fleet" -o "$out/plan.json" \
            ${state_args[@]+"${state_args[@]}"} ${now_args[@]+"${now_args[@]}"}; then
        {
            echo "$MARKER"
            echo "### placer: no plan"
            echo
            echo '```'
            cat "$out/plan-errors.txt"
            echo '```'
        } > "$out/comment.md"
        die "planning failed; see $out/comment.md"
    fi
    local url=()
    if [ -n "${PLACER_PLAN_URL:-}" ]; then url=(--plan-url "$PLACER_PLAN_URL"); fi
    { echo "$MARKER"; "$PLACER" show "$named" --markdown ${url[@]+"${url[@]}"}; } > "$out/comment.md"
    echo "pipeline.sh: wrote $out/plan.json and $out/comment.md"
}

# -------------------------------------------------------------------- merge

require_gitops() {  # PLAN: merge commits a GitOps tree, never calls a cloud
    [ "$(plan_field "$1" mode)" = gitops ] \
        || die "merge commits a GitOps tree: set Settings apply.mode: gitops (in live mode, run placer apply instead)"
}

merge() {
    [ $# -ge 2 ] && [ $# -le 3 ] || usage
    local fleet deploy rc reviewed="" how="plan"
    fleet=$(abspath "$1")
    deploy=$(abspath "$2")
    [ -d "$fleet" ] || die "fleet directory $1 not found"
    if [ $# -eq 3 ]; then
        [ -f "$3" ] || die "reviewed plan $3 not found"
        reviewed=$(abspath "$3")
    fi
    git -C "$deploy" rev-parse --git-dir > /dev/null 2>&1 || die "$2 is not a git repository (the deploy repository)"
    deploy=$(git -C "$deploy" rev-parse --show-toplevel)
    if [ -n "$(git -C "$deploy" status --porcelain)" ]; then
        die "the deploy repository $deploy has uncommitted changes; placer commits only its own work"
    fi
    work=$(mktemp -d)  # global: the EXIT trap runs after this function has returned
    trap 'rm -rf "$work"' EXIT
    cd "$deploy"

    if [ -n "$reviewed" ]; then
        "$PLACER" show "$reviewed" --json > /dev/null  # a damaged or foreign file: placer says what is wrong
        require_gitops "$reviewed"
    fi
    if [ -n "$reviewed" ] && [ "$(plan_field "$reviewed" count)" = 0 ]; then
        # nothing to apply: its apply rewrote the tfvars' placer_plan, and the merge committed that alone;
        # the fleet as merged is planned against the committed state, as without a reviewed plan
        echo "pipeline.sh: the reviewed plan has no changes; checking the fleet as merged" >&2
    elif [ -n "$reviewed" ]; then
        # apply refuses, before it changes anything, a plan made from another fleet or against
        # another state: then the reviewed plan is out of date, and a fresh one is made
        set +e
        "$PLACER" apply "$reviewed" --fleet "$fleet" --state "$STATE_REL" 2> "$work/reviewed.txt"
        rc=$?
        set -e
        if [ $rc -eq 0 ]; then
            cat "$work/reviewed.txt" >&2
            cp "$reviewed" "$work/plan.json"
            how="reviewed plan"
            echo "pipeline.sh: applied the reviewed plan $reviewed"
        elif grep -q -e "was made from another version of" -e "stale plan" "$work/reviewed.txt"; then
            # the refusal's own line: warnings about the fleet may come before it
            echo "pipeline.sh: the reviewed plan is out of date, planning afresh: $(grep -m 1 -e "was made from another version of" -e "stale plan" "$work/reviewed.txt")" >&2
        else
            cat "$work/reviewed.txt" >&2
            die "placer apply of the reviewed plan failed (exit $rc)"
        fi
    fi

    if [ "$how" = plan ]; then
        set +e  # plan validates the fleet first: errors come out as path:line: Kind/name: field: message
        "$PLACER" plan "$fleet" -o "$work/plan.json" --state "$STATE_REL" --detailed-exitcode \
            ${now_args[@]+"${now_args[@]}"}
        rc=$?
        set -e
        case $rc in
            0) echo "pipeline.sh: no changes; the deploy repository already holds this fleet's placement"; return 0 ;;
            2) ;;
            *) die "placer plan failed (exit $rc)" ;;
        esac
        require_gitops "$work/plan.json"
        "$PLACER" apply "$work/plan.json" --state "$STATE_REL"
    fi
    "$PLACER" render "$work/plan.json" --out "$(plan_field "$work/plan.json" directory)"

    git add -A
    if [ -z "$(git status --porcelain)" ]; then
        echo "pipeline.sh: the rendered tree is unchanged; nothing to commit"
        return 0
    fi
    local identity=()
    if [ -z "$(git config user.email || true)" ]; then
        identity=(-c user.name="placer" -c user.email="placer@users.noreply.github.com")
    fi
    git ${identity[@]+"${identity[@]}"} commit --quiet \
        -m "placer: apply $how $(plan_field "$work/plan.json" short-digest)" \
        -m "$(plan_changes "$work/plan.json")" \
        -m "$(plan_field "$work/plan.json" cost)" \
        -m "Fleet digest: $(plan_field "$work/plan.json" digest)"
    echo "pipeline.sh: committed $(git rev-parse --short HEAD) in $deploy"
}

case ${1:-} in
    pr) shift; pr "$@" ;;
    merge) shift; merge "$@" ;;
    *) usage ;;
esac
