#!/usr/bin/env bash
# Install bubblewrap and kcode on a GitHub runner, and allow the user namespaces bubblewrap
# needs (Ubuntu 23.10+ restricts them through AppArmor; `kcode doctor` prints the same fix).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
if ! command -v bwrap >/dev/null; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq bubblewrap
fi
if [ "$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null || echo 0)" = 1 ]; then
  $SUDO sysctl -w kernel.apparmor_restrict_unprivileged_userns=0
fi
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "${KCODE_SPEC:-${GITHUB_ACTION_PATH:?}}"
kcode --version
kcode doctor || true   # says what is wrong; kcode run --ci refuses to run unsandboxed anyway
