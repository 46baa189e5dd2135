package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// `slo replay` replays a user's scenario file through the generated alarms
// and fails when its expectations do not hold; -var changes a threshold.
func TestReplayCommand(t *testing.T) {
	var out bytes.Buffer
	if err := runReplay([]string{"-scenario", "../../replay/testdata/scenarios/quiet-night.json"}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "0 notifications, ok") {
		t.Errorf("output %q", out.String())
	}
	out.Reset()
	err := runReplay([]string{"-var", "slo.page_min_bad_events=1", "-json", "../../replay/testdata/scenarios/quiet-night.json"}, &out)
	if err == nil || !strings.Contains(err.Error(), "1 of 1 scenarios failed") {
		t.Fatalf("a page on one bad stream passed: %v", err)
	}
	var res []struct {
		Notifications []struct{ Topic, State string }
		Failures      []string
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res) != 1 || len(res[0].Failures) == 0 ||
		res[0].Notifications[0].Topic != "page_sns_topic_arns" || res[0].Notifications[0].State != "ALARM" {
		t.Errorf("json %s %v", out.String(), err)
	}
	if err := runReplay(nil, &out); err == nil {
		t.Error("no scenario accepted")
	}
}
