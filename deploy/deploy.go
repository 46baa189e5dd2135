// Package deploy holds the example stack's Terraform root (main.tf.json),
// embedded so that the alarm replay (package replay, `slo replay`) wires the
// alarms and SLO modules exactly as the example does, outside the repository
// too.
package deploy

import _ "embed"

// Main is main.tf.json.
//
//go:embed main.tf.json
var Main []byte
