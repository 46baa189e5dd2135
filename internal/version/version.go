// Package version is streamlens's version: the extension's User-Agent, its
// spans' telemetry.sdk.version and instrumentation scope version.
package version

// Version is kept equal to clients/node/package.json's (a test checks).
const Version = "0.1.0"
