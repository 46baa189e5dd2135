// Package gen renders every generated Terraform file from the metric
// definitions and the SLO spec.
package gen

import (
	"github.com/streamlens/streamlens/alarms"
	"github.com/streamlens/streamlens/dashboards"
	"github.com/streamlens/streamlens/insights"
	"github.com/streamlens/streamlens/internal/tfjson"
	"github.com/streamlens/streamlens/slo"
)

// Files returns path (relative to the repository root) → contents.
func Files(specs []slo.Spec) (map[string][]byte, error) {
	dash, err := dashboards.Module(specs)
	if err != nil {
		return nil, err
	}
	ins, err := insights.Module()
	if err != nil {
		return nil, err
	}
	fleet, err := dashboards.FleetModule()
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for path, v := range map[string]any{
		"dashboards/dashboard.tf.json": dash,
		"fleet/fleet.tf.json":          fleet,
		"alarms/alarms.tf.json":        alarms.Module(),
		"slo/slo.tf.json":              slo.Module(specs),
		"insights/insights.tf.json":    ins,
	} {
		b, err := tfjson.Marshal(v)
		if err != nil {
			return nil, err
		}
		out[path] = b
	}
	return out, nil
}
