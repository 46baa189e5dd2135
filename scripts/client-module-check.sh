#!/usr/bin/env bash
# A function module outside this tree can use the Go client the way README
# ("Add streamlens to your function", Go) says, before the client is
# published: a replace towards a checkout of client/, go mod tidy, go build.
# Then its module graph holds the client's few dependencies and none of the
# main module's (CloudWatch SDK, collector pdata, gRPC, ...), its go line is
# still the client's (go mod tidy raises it when a dependency needs more),
# it builds with that oldest toolchain (fetched through the module proxy),
# and vendoring (for a build that cannot see the checkout) works too.
#
# Usage: scripts/client-module-check.sh   (GO=go by default; needs the
# module proxy for aws-lambda-go, otel and x/sys, and the toolchain once)
set -euo pipefail

GO=${GO:-go}
client=$(cd "$(dirname "$0")/../client" && pwd)
client_go=$(sed -n 's/^go //p' "$client/go.mod")
[ -n "$client_go" ] || { echo "client-module-check: no go line in $client/go.mod" >&2; exit 1; }

fn=$(mktemp -d)
trap 'rm -rf "$fn"' EXIT
cd "$fn"
# Outside any workspace, like a function's own repository.
export GOWORK=off

cat >main.go <<'EOF'
// A streaming function that links the client: what README's Go section shows.
package main

import (
	"context"
	"io"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/streamlens/streamlens/client"
)

var sl, _ = client.FromEnv()

func handler(ctx context.Context, _ events.LambdaFunctionURLRequest) (*events.LambdaFunctionURLStreamingResponse, error) {
	start := time.Now()
	pr, pw := io.Pipe()
	go func() {
		s := sl.Start(ctx, pw, client.StartOptions{Expected: 2, BundleID: "check", StartTime: start})
		for _, inst := range []string{"A", "B"} {
			s.WriteChunk([]byte(inst+"\n"), client.ChunkOptions{Instrument: inst})
		}
		s.WriteChunk([]byte("DONE\n"), client.ChunkOptions{Trailer: true})
		if sum := s.End(client.EndOptions{}); sum.Status != client.StatusComplete {
			s.End(client.EndOptions{Status: client.StatusError})
		}
		pw.Close()
	}()
	return &events.LambdaFunctionURLStreamingResponse{StatusCode: 200, Body: pr}, nil
}

func main() { lambda.Start(handler) }
EOF

# README's steps, with the checkout at $client: the replace alone, and go
# mod tidy requires the client (at the zero pseudo-version a replace gets).
# The function's go line starts at the client's, to see whether tidy has to
# raise it; aws-lambda-go, which the function imports too, starts at the
# version the client requires (tidy would take the latest, whose own go
# line is the function's business, not the client's).
"$GO" mod init example.com/fn >/dev/null 2>&1
"$GO" mod edit -go="$client_go" -require="$(awk '$1 == "github.com/aws/aws-lambda-go" { print $1 "@" $2 }' "$client/go.mod")"
"$GO" mod edit -replace=github.com/streamlens/streamlens/client="$client"
"$GO" mod tidy
grep -q '^[[:space:]]*github.com/streamlens/streamlens/client v' go.mod || {
	echo "client-module-check: go mod tidy did not require the client" >&2
	exit 1
}
"$GO" build -tags lambda.norpc -o /dev/null .
echo "client-module-check: a function module outside the tree builds with the client (replace => $client)"

fail=0
fn_go=$(sed -n 's/^go //p' go.mod)
if [ "$fn_go" != "$client_go" ]; then
	echo "client-module-check: go mod tidy raised the function's go line from $client_go to $fn_go" >&2
	fail=1
fi
modules=$("$GO" list -m all)
# The main module's dependencies, and the main module itself.
for heavy in github.com/aws/aws-sdk-go-v2 go.opentelemetry.io/collector google.golang.org/grpc \
	google.golang.org/protobuf go.yaml.in/yaml github.com/prozz/aws-embedded-metrics-golang 'github.com/streamlens/streamlens '; do
	if grep -qF "$heavy" <<<"$modules" || grep -qF "$heavy" go.sum; then
		echo "client-module-check: the function module requires $heavy:" >&2
		grep -F "$heavy" <<<"$modules"$'\n'"$(cat go.sum)" | sed 's/^/  /' >&2
		fail=1
	fi
done
[ "$fail" = 0 ] || exit 1
echo "client-module-check: none of the main module's dependencies; the function's go.mod:"
sed 's/^/  /' go.mod

# The oldest Go the client's go.mod names builds the function too.
GOTOOLCHAIN="go$client_go" "$GO" build -tags lambda.norpc -o /dev/null .
echo "client-module-check: builds with GOTOOLCHAIN=go$client_go"

# Vendored: a container build that sees the function but not the checkout.
"$GO" mod vendor
test -f vendor/github.com/streamlens/streamlens/client/client.go
"$GO" build -mod=vendor -tags lambda.norpc -o /dev/null .
echo "client-module-check: builds from vendor/ too"
