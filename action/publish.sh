#!/usr/bin/env bash
# Open a pull request with kcode's change (INPUT_OPEN_PR=true) and/or comment on the issue
# (INPUT_COMMENT=true), from the artifacts of action/run.sh. KCODE_ACTION_DRY_RUN=true prints
# the push and gh commands instead of running them (the local branch and commit are made).
set -euo pipefail
cd "${GITHUB_WORKSPACE:-$PWD}"
A="${KCODE_ARTIFACTS:?no artifacts: the run step did not finish}"
DRY="${KCODE_ACTION_DRY_RUN:-false}"
run() { if [ "$DRY" = true ]; then printf 'dry-run:'; printf ' %q' "$@"; echo; else "$@"; fi; }
output() { echo "$1" >> "${GITHUB_OUTPUT:-/dev/null}"; }
STATUS="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$A/result.json")"
if [ "${INPUT_OPEN_PR:-false}" = true ]; then
  if [ "$STATUS" != finished ] || [ ! -s "$A/patch.diff" ]; then
    echo "kcode action: no pull request: the run ended $STATUS$( [ -s "$A/patch.diff" ] || echo ', with no change')"
  else
    BRANCH="kcode/${GITHUB_RUN_ID:-local}-${GITHUB_RUN_ATTEMPT:-1}"
    BASE="$(git rev-parse --abbrev-ref HEAD)"
    TITLE="$(python -c 'import json,sys; t=json.load(open(sys.argv[1]))["task"].strip().splitlines()[0]; print(("kcode: " + t)[:100])' "$A/result.json")"
    git switch -q -c "$BRANCH"
    git apply --index "$A/patch.diff"
    git -c user.name="kcode[bot]" -c user.email="kcode-bot@users.noreply.github.com" commit -q -m "$TITLE" -m "$(cat "$A/summary.md")"
    run git push --set-upstream origin "$BRANCH"
    BODY_ARGS=(--body-file "$A/summary.md")
    if [ -n "${INPUT_ISSUE:-}" ]; then
      { cat "$A/summary.md"; echo; echo "Closes #$INPUT_ISSUE"; } > "$A/pr-body.md"
      BODY_ARGS=(--body-file "$A/pr-body.md")
    fi
    if [ "$DRY" = true ]; then
      run gh pr create --base "$BASE" --head "$BRANCH" --title "$TITLE" "${BODY_ARGS[@]}"
      output "pr-url=dry-run"
    else
      URL="$(gh pr create --base "$BASE" --head "$BRANCH" --title "$TITLE" "${BODY_ARGS[@]}")"
      output "pr-url=$URL"
    fi
  fi
fi
if [ "${INPUT_COMMENT:-false}" = true ] && [ -n "${INPUT_ISSUE:-}" ]; then
  run gh issue comment "$INPUT_ISSUE" --body-file "$A/summary.md"
fi
