package slo

import _ "embed"

// shipped is slos.json, embedded so that the commands work outside the
// repository (go install, a release binary) with the shipped SLOs.
//
//go:embed slos.json
var shipped []byte

// Shipped is the spec streamlens ships (slo/slos.json).
func Shipped() ([]Spec, error) { return Parse(shipped) }
