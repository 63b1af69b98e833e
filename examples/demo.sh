#!/usr/bin/env bash
# The demo: validate and plan the hybrid fleet, apply it in gitops mode, re-plan (no changes),
# explain one model's place, and ask what traffic grown by half would do.
set -euo pipefail
cd "$(dirname "$0")/.."
FLEET=examples/hybrid
WORK=.placer/hybrid          # the fleet's Settings keep state and the GitOps tree here
NOW=2026-11-28T07:00:00Z     # a fixed plan time keeps the retire policy reproducible
rm -rf "$WORK"
mkdir -p "$WORK"

# a step's title, bold on a terminal only: a log or a pipe got the raw escape codes
step() {
  if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi
}
# the first $1 lines of standard input, indented, then how many more were left out
listed() {
  awk -v most="$1" 'NR <= most { print "  " $0 } END { if (NR > most) printf "  ... and %d more files\n", NR - most }'
}

step "placer validate $FLEET"
placer validate "$FLEET"

step "placer plan $FLEET -o $WORK/plan.json"
placer plan "$FLEET" -o "$WORK/plan.json" --now "$NOW"

step "placer apply $WORK/plan.json   (gitops mode: writes manifests and tfvars)"
placer apply "$WORK/plan.json"

step "what the GitOps tree now holds"
find "$WORK/deploy" -type f | sort | listed 40

step "placer plan $FLEET --detailed-exitcode   (a re-plan after apply changes nothing: exit 0)"
set +e
placer plan "$FLEET" --now "$NOW" --detailed-exitcode > "$WORK/replan.txt"
code=$?
set -e
tail -1 "$WORK/replan.txt"
if [ "$code" != 0 ]; then echo "re-plan exited $code, expected 0 (no changes)" >&2; exit 1; fi

step "placer explain $FLEET legal-assistant-70b --plan $WORK/plan.json   (why the plan put it there)"
placer explain "$FLEET" legal-assistant-70b --plan "$WORK/plan.json"

step "placer whatif $FLEET --demand-scale 1.5   (if traffic grew by half tomorrow)"
placer whatif "$FLEET" --now "$NOW" --demand-scale 1.5
