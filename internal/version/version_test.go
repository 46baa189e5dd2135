package version

import (
	"encoding/json"
	"os"
	"testing"
)

func TestVersionMatchesTheNodeClient(t *testing.T) {
	b, err := os.ReadFile("../../clients/node/package.json")
	if err != nil {
		t.Fatal(err)
	}
	var p struct{ Version string }
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.Version != Version {
		t.Errorf("clients/node/package.json says %s, version.Version %s", p.Version, Version)
	}
}
