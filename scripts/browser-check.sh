#!/usr/bin/env bash
# Renders a dashboard preview page in headless Chromium and checks what the
# browser laid out: every time-series chart is drawn, with its points inside
# the chart, and no "NaN" anywhere. Prints one line; exits 1 on a failed
# check, 0 with SKIPPED when there is no chromium.
set -euo pipefail
page=$1
if ! command -v chromium >/dev/null 2>&1; then
  echo "## SKIPPED: browser check of $page — no chromium (scripts/need-chromium.sh installs it) ##"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The page has no script of its own; the check is added to a copy.
{
  sed 's#</body></html>##' "$page"
  cat <<'JS'
<script>
addEventListener("load", () => {
  const charts = [...document.querySelectorAll("svg.chart")];
  let points = 0, bad = [];
  for (const s of charts) {
    const box = s.getBoundingClientRect();
    if (box.width < 100 || box.height < 30) bad.push("chart not laid out");
    for (const c of s.querySelectorAll("circle.pt")) {
      const b = c.getBoundingClientRect();
      if (b.width > 0 && b.left >= box.left - 1 && b.right <= box.right + 1 && b.top >= box.top - 1 && b.bottom <= box.bottom + 1) points++;
      else bad.push("point outside its chart");
    }
  }
  if (document.body.innerText.includes("NaN")) bad.push("NaN on the page");
  document.title = "check charts=" + charts.length + " points=" + points + " bad=" + bad.length + " " + bad.slice(0, 3).join(",");
});
</script></body></html>
JS
} > "$work/page.html"
dom=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$work/profile" \
  --virtual-time-budget=2000 --dump-dom "file://$work/page.html" 2>/dev/null)
title=$(printf '%s' "$dom" | sed -n 's#.*<title>\(check [^<]*\)</title>.*#\1#p')
want=$(grep -o '<svg class="chart"' "$page" | wc -l)
echo "browser check of $page (chromium): ${title:-no result}"
case "$title" in
  "check charts=$want points="*" bad=0 "*) [ "$want" -gt 0 ] && ! printf '%s' "$title" | grep -q "points=0 " ;;
  *) exit 1 ;;
esac
