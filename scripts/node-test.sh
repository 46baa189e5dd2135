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
