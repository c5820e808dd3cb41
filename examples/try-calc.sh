#!/usr/bin/env bash
# Copy the calc example into a fresh git repository and let kcode fix its failing test.
# Usage: examples/try-calc.sh [extra kcode run flags, e.g. --model qwen2.5-coder-0.5b]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/kcode-calc-XXXXXX")"
cp -r "$here/calc/." "$work/"
cd "$work"
git init -q -b main
git add -A
git -c user.name=kcode-example -c user.email=example@localhost commit -qm "calc example"
echo "kcode example repository: $work" >&2
exec kcode run "The test tests/test_calc.py::test_add fails because add() in calc/__init__.py returns the wrong result. Fix add() with edit_file, check it with run_tests, then call finish." --max-steps 12 "$@"
