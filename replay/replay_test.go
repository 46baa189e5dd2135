package replay

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/streamlens/streamlens/slo"
)

func loadScenario(t *testing.T, path string) *Scenario {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseScenario(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

func specs(t *testing.T) []slo.Spec {
	t.Helper()
	s, err := slo.Load("../slo/slos.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The scenario table: every file in testdata/scenarios replayed through the
// generated alarms as deploy/ wires them, each with its expectations.
func TestScenarioTable(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.json")
	if err != nil || len(files) < 10 {
		t.Fatalf("%d scenario files, %v", len(files), err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			s := loadScenario(t, f)
			st, err := DefaultStack(specs(t), s.Vars)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Replay(st, s)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range res.Notifications {
				t.Logf("%s %s %s → %s", n.At, n.State, n.Alarm, n.Topic)
			}
			for _, f := range res.Failures {
				t.Error(f)
			}
		})
	}
}

// The committed .tf.json files (what `slo replay -tf .` reads) replay as
// the generated modules do.
func TestCommittedFilesReplayAlike(t *testing.T) {
	vars := map[string]any{"provisioned_concurrency": 1}
	fromFiles, err := DirStack("..", vars)
	if err != nil {
		t.Fatal(err)
	}
	generated, err := DefaultStack(specs(t), vars)
	if err != nil {
		t.Fatal(err)
	}
	fm, fc, err := fromFiles.Alarms()
	if err != nil {
		t.Fatal(err)
	}
	gm, gc, err := generated.Alarms()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fm, gm) || !reflect.DeepEqual(fc, gc) {
		t.Error("the committed files differ from the generated modules: run make generate")
	}
	if len(gm) < 20 || len(gc) < 6 {
		t.Errorf("%d metric alarms, %d composites", len(gm), len(gc))
	}
}

// What the replay cannot evaluate is an error naming it, never a guess.
func TestStackErrors(t *testing.T) {
	mod := map[string]any{
		"variable": map[string]any{"function_name": map[string]any{"type": "string"}},
		"resource": map[string]any{"aws_cloudwatch_metric_alarm": map[string]any{"a": map[string]any{
			"alarm_name": "${var.function_name}-a", "threshold": 1, "evaluation_periods": 1, "comparison_operator": "GreaterThanThreshold",
			"namespace": "N", "metric_name": "M", "statistic": "Sum", "period": 60, "dimensions": map[string]any{}}}},
	}
	st, err := NewStack(nil, map[string]map[string]any{"m": mod}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Alarms(); err == nil || !strings.Contains(err.Error(), "function_name has no default") {
		t.Errorf("a variable without a value: %v", err)
	}
	st, _ = NewStack(nil, map[string]map[string]any{"m": mod}, map[string]any{"function_name": "f"})
	mas, _, err := st.Alarms()
	if err != nil || len(mas) != 1 || mas[0].Name != "f-a" {
		t.Fatalf("%+v %v", mas, err)
	}
	res := mod["resource"].(map[string]any)["aws_cloudwatch_metric_alarm"].(map[string]any)["a"].(map[string]any)
	res["period"] = 90
	if _, _, err := st.Alarms(); err == nil || !strings.Contains(err.Error(), "whole minutes") {
		t.Errorf("a 90 s period: %v", err)
	}
	res["period"] = 60
	res["alarm_name"] = "${lookup(var.function_name)}"
	if _, _, err := st.Alarms(); err == nil || !strings.Contains(err.Error(), "lookup") {
		t.Errorf("an unknown function: %v", err)
	}
}
