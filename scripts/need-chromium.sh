#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard preview's browser check when it
# is missing and this machine can (root with apt-get); otherwise says so: the
# check then skips loudly.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium (Debian package) for the dashboard preview's browser check"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/tmp/need-chromium.log 2>&1; then
    apt-get update -q >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/tmp/need-chromium.log 2>&1 || tail -3 /tmp/need-chromium.log
  fi
fi
command -v chromium >/dev/null 2>&1 || echo "## chromium not available: the browser check of the dashboard preview will be SKIPPED ##"
exit 0
