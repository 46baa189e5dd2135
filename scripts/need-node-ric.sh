#!/usr/bin/env bash
# Installs AWS's Node.js runtime interface client (npm aws-lambda-ric, pinned)
# (in a per-machine cache, linked as bin/node-ric), where the Node end-to-end tests (internal/e2e/node_test.go)
# and examples/node-pricing look for it. It is the RIC Lambda's own Node
# runtimes are built from: awslambda.streamifyResponse and the streaming
# Runtime API protocol exactly as on Lambda.
#
# Cached: a complete install (the native addon built) is kept, and this script
# returns at once when it is there. The first install compiles curl and
# aws-lambda-cpp from the tarballs in the package (its preinstall script) and
# a node-gyp addon: about 3 minutes on 2 cores. It needs cmake, autoconf,
# automake, libtool, make and g++; they are installed with apt-get when
# missing and this runs as root. Anything missing that cannot be installed:
# it says so loudly and exits 0, and the tests that need the RIC skip loudly.
#
# bin/ is ignored by git (.gitignore): node_modules never reaches a commit.
set -euo pipefail
RIC_VERSION=4.0.2
root=$(cd "$(dirname "$0")/.." && pwd)
# Built once per machine, outside the clone (a fresh clone, as CI's, then
# finds it at once), and linked as bin/node-ric where the tests look.
cache="${STREAMLENS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamlens}"
dir="$cache/node-ric-$RIC_VERSION"
pkg="$dir/node_modules/aws-lambda-ric"
link() {
  mkdir -p "$root/bin"
  if [ "$(readlink "$root/bin/node-ric" 2>/dev/null)" != "$dir" ]; then
    rm -rf "$root/bin/node-ric"
    ln -s "$dir" "$root/bin/node-ric"
  fi
}

skip() {
  echo "############################################################################"
  echo "## SKIPPED: aws-lambda-ric not installed: $*"
  echo "## The Node end-to-end tests will skip."
  echo "############################################################################"
  exit 0
}

# The addon is the last thing the install builds: it is the mark of a whole
# install of the pinned version.
if [ -f "$pkg/rapid-client.node" ] && grep -q "\"version\": \"$RIC_VERSION\"" "$pkg/package.json" 2>/dev/null; then
  link
  exit 0
fi
command -v node >/dev/null 2>&1 || skip "node is not on this machine"
command -v npm >/dev/null 2>&1 || skip "npm is not on this machine"

missing=()
for tool in cmake autoreconf libtoolize make g++ python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "need-node-ric: installing build tools for the RIC's native part (missing: ${missing[*]})"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        cmake autoconf automake libtool make g++ python3; } >/dev/null ||
      skip "apt-get could not install cmake/autoconf/automake/libtool/make/g++/python3 (missing: ${missing[*]})"
  else
    skip "build tools missing (${missing[*]}) and no root apt-get to install them"
  fi
fi

# A partial install (interrupted, failed build) is redone from scratch.
rm -rf "$dir"
mkdir -p "$dir"
cat >"$dir/package.json" <<EOF
{"name": "streamlens-node-ric", "private": true, "dependencies": {"aws-lambda-ric": "$RIC_VERSION"}}
EOF
echo "need-node-ric: npm install aws-lambda-ric@$RIC_VERSION into $dir (builds curl, aws-lambda-cpp and an addon: ~3 min, once per machine)"
start=$(date +%s)
# aws-lambda-ric 4 declares node >=22; on older Node npm only warns, and the
# RIC runs (the e2e tests say which node they use).
if ! (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >"$dir/install.log" 2>&1); then
  tail -20 "$dir/install.log"
  rm -rf "$dir/node_modules"
  skip "npm install failed (log above)"
fi
[ -f "$pkg/rapid-client.node" ] || { rm -rf "$dir/node_modules"; skip "the install did not build rapid-client.node"; }
link
echo "need-node-ric: installed in $(($(date +%s) - start)) s ($(node --version)), in $dir"
