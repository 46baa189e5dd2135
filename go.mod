module github.com/streamlens/streamlens

go 1.26.8

require (
	github.com/aws/aws-lambda-go v1.55.1
	github.com/google/uuid v1.6.0
	golang.org/x/sys v0.49.0
)

require github.com/prozz/aws-embedded-metrics-golang v1.2.0 // indirect
