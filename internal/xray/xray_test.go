package xray

import "testing"

func TestParse(t *testing.T) {
	got := Parse(" Root=1-5759e988-bd862e3fe1be46a994272793; Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a:1")
	if got != (Header{Root: "1-5759e988-bd862e3fe1be46a994272793", Parent: "53995c3f42cd8ad8", Sampled: "1"}) {
		t.Errorf("%+v", got)
	}
	if got := Parse("garbage"); got != (Header{}) {
		t.Errorf("%+v", got)
	}
}
