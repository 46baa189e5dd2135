#!/usr/bin/env bash
# Runs the Node client's tests (node --test) against the Go decoder binary.
# Skips loudly when node is missing; never passes silently.
set -euo pipefail
bin=$(realpath "$1")
cd "$(dirname "$0")/../clients/node"
if ! command -v node >/dev/null 2>&1; then
  echo "###########################################################"
  echo "## SKIPPED: Node client tests — node is not on this machine ##"
  echo "###########################################################"
  exit 0
fi
STREAMLENS_BIN="$bin" node --test test/
# The package as a user installs it: npm pack, then an install of the tarball
# in a project of its own (a real copy, not a link into this repository).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm pack --silent --pack-destination "$tmp" >/dev/null
(cd "$tmp" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund ./streamlens-client-*.tgz >/dev/null)
test ! -L "$tmp/node_modules/@streamlens/client" || { echo "npm pack: the install is a link, not a copy"; exit 1; }
(cd "$tmp" && node -e "const {Client}=require('@streamlens/client'); if (typeof Client.fromEnv !== 'function') process.exit(1)")
# The zero-code instrumentation preloads from the package as from the layer.
(cd "$tmp" && STREAMLENS_ADDR=127.0.0.1:9 node --require @streamlens/client/auto.js -e "if (globalThis[Symbol.for('streamlens.auto.wrapped')] !== true) process.exit(1)")
echo "npm pack: the tarball installs and loads"
