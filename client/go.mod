module github.com/streamlens/streamlens/client

go 1.22.0

require (
	github.com/aws/aws-lambda-go v1.54.0
	go.opentelemetry.io/otel/trace v1.35.0
	golang.org/x/sys v0.30.0
)

require go.opentelemetry.io/otel v1.35.0 // indirect
