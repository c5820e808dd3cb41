#!/usr/bin/env bash
# A real task on a real library: marshmallow 3.23.1 from PyPI (its sdist, with its own 1,231
# tests), set up as users set up a project (a git repository, a .venv/ with the package
# installed editable), with one real-looking bug put in: validate.Length rejects a value of
# exactly the maximum length. kcode gets the bug report, as a user would write it.
#
# Usage: examples/try-marshmallow.sh [extra kcode run flags, e.g. --model qwen2.5-coder-0.5b]
# Needs PyPI (the sdist, flit_core, pytest, simplejson); KCODE_EXAMPLE_DIR reuses a directory.
set -euo pipefail
version=3.23.1
sha256=3a8dfda6edd8dcdbf216c0ede1d1e78d230a6dc9c5a088f58c4083b974a0d468
work="${KCODE_EXAMPLE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/kcode-marshmallow-XXXXXX")}"
mkdir -p "$work"
cd "$work"
if [ ! -d repo/.git ]; then
  python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: "marshmallow==$version" -d sdist
  echo "$sha256  sdist/marshmallow-$version.tar.gz" | sha256sum -c --quiet
  mkdir repo
  tar xzf "sdist/marshmallow-$version.tar.gz" -C repo --strip-components=1 --no-same-owner
  cd repo
  printf '.venv/\n__pycache__/\n.pytest_cache/\n' > .gitignore
  git init -q -b main
  git add -A
  git -c user.name=kcode-example -c user.email=example@localhost commit -qm "marshmallow $version"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[tests]'
  # the bug: a value of exactly `max` items is rejected
  sed -i 's/        if self.max is not None and length > self.max:/        if self.max is not None and length >= self.max:/' src/marshmallow/validate.py
  grep -q 'length >= self.max' src/marshmallow/validate.py
  git -c user.name=kcode-example -c user.email=example@localhost commit -qam "validate: tighten Length"
  cd ..
fi
cd repo
echo "kcode example repository: $work/repo" >&2
exec kcode run "Since the last commit, validate.Length(max=3) rejects the string 'abc' with \"Longer than maximum length 3.\", and Length(min=1, max=3) rejects it too. A value whose length equals max must be accepted. tests/test_validate.py::test_length_max fails. Fix it." --max-steps 30 --max-time 15m "$@"
