// Package xray reads the X-Ray trace header (X-Amzn-Trace-Id), which Lambda
// gives the runtime and the extensions:
// "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".
package xray

import "strings"

// Header is the parts of an X-Ray trace header streamlens uses; a part the
// header lacks is "".
type Header struct {
	Root, Parent, Sampled string
}

// Parse reads Root, Parent and Sampled from h; other fields are ignored.
func Parse(h string) Header {
	var x Header
	for _, kv := range strings.Split(h, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch k {
		case "Root":
			x.Root = v
		case "Parent":
			x.Parent = v
		case "Sampled":
			x.Sampled = v
		}
	}
	return x
}
