#!/usr/bin/env bash
# Run `kcode run --ci` in the job's checkout. The task is INPUT_TASK, or the title and body of
# issue INPUT_ISSUE (read with gh). Writes status, exit-code and artifacts to $GITHUB_OUTPUT.
set -uo pipefail
cd "${GITHUB_WORKSPACE:-$PWD}"
ARTIFACTS="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/kcode-artifacts"
rm -rf "$ARTIFACTS"
TASK="${INPUT_TASK:-}"
if [ -z "$TASK" ] && [ -n "${INPUT_ISSUE:-}" ]; then
  if ! ISSUE_JSON="$(gh issue view "$INPUT_ISSUE" --json number,title,body)"; then
    echo "kcode action: cannot read issue #$INPUT_ISSUE with gh" >&2
    echo "exit-code=2" >> "${GITHUB_OUTPUT:-/dev/null}"
    exit 2
  fi
  TASK="$(python -c 'import json,sys; i=json.load(sys.stdin); print("Resolve issue #%s: %s\n\n%s" % (i["number"], i["title"], i["body"]))' <<<"$ISSUE_JSON")"
fi
if [ -z "$TASK" ]; then
  echo "kcode action: give the task or issue input" >&2
  echo "exit-code=2" >> "${GITHUB_OUTPUT:-/dev/null}"
  exit 2
fi
if [ -n "${INPUT_API_KEY:-}" ]; then
  export "${INPUT_API_KEY_ENV:-OPENAI_API_KEY}=$INPUT_API_KEY"
fi
ARGS=(run --ci "$TASK" --artifacts "$ARTIFACTS" --sandbox "${INPUT_SANDBOX:-workspace-write}")
[ -n "${INPUT_MODEL:-}" ] && ARGS+=(--model "$INPUT_MODEL")
[ -n "${INPUT_BASE_URL:-}" ] && ARGS+=(--base-url "$INPUT_BASE_URL")
[ -n "${INPUT_MAX_STEPS:-}" ] && ARGS+=(--max-steps "$INPUT_MAX_STEPS")
[ -n "${INPUT_MAX_TIME:-}" ] && ARGS+=(--max-time "$INPUT_MAX_TIME")
kcode "${ARGS[@]}"
CODE=$?
STATUS="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$ARTIFACTS/result.json" 2>/dev/null || echo error)"
{
  echo "exit-code=$CODE"
  echo "status=$STATUS"
  [ -d "$ARTIFACTS" ] && echo "artifacts=$ARTIFACTS"
} >> "${GITHUB_OUTPUT:-/dev/null}"
# the step itself succeeds so the artifacts upload and the publish step run; the action's
# last step exits with kcode's code
exit 0
