package cwcheck

import (
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	good := `{"_aws":{"Timestamp":1800000000000,"CloudWatchMetrics":[{"Namespace":"Streamlens","Dimensions":[["FunctionName","Instrument"],["FunctionName"]],` +
		`"Metrics":[{"Name":"ChunkLatency","Unit":"Milliseconds"}]}]},"FunctionName":"pricing","Instrument":"SPY","ChunkLatency":[1.5,2]}`
	ms, err := Check([]byte(good), now)
	if err != nil || len(ms) != 2 || ms[0] != "Streamlens|ChunkLatency|FunctionName=pricing,Instrument=SPY" || ms[1] != "Streamlens|ChunkLatency|FunctionName=pricing" {
		t.Fatalf("%q %v", ms, err)
	}
	for name, bad := range map[string]string{
		"AWS/ namespace":      strings.Replace(good, `"Streamlens"`, `"AWS/Lambda"`, 1),
		"non-ASCII namespace": strings.Replace(good, `"Streamlens"`, `"Streamélens"`, 1),
		"non-ASCII value":     strings.Replace(good, `"SPY"`, `"étf"`, 1),
		"control character":   strings.Replace(good, `"SPY"`, `"\t"`, 1),
		"whitespace only":     strings.Replace(good, `"SPY"`, `"  "`, 1),
		"empty value":         strings.Replace(good, `"SPY"`, `""`, 1),
		"long value":          strings.Replace(good, `"SPY"`, `"`+strings.Repeat("x", 1025)+`"`, 1),
		"missing dimension":   strings.Replace(good, `"Instrument":"SPY",`, ``, 1),
		"numeric dimension":   strings.Replace(good, `"SPY"`, `7`, 1),
		"bad unit":            strings.Replace(good, `"Milliseconds"`, `"ms"`, 1),
		"too many values":     strings.Replace(good, `[1.5,2]`, `[`+strings.TrimSuffix(strings.Repeat("1,", 101), ",")+`]`, 1),
		"no values":           strings.Replace(good, `[1.5,2]`, `[]`, 1),
		"string value":        strings.Replace(good, `[1.5,2]`, `"1.5"`, 1),
		"tiny value":          strings.Replace(good, `[1.5,2]`, `1e-200`, 1),
		"old timestamp":       strings.Replace(good, `1800000000000`, `1700000000000`, 1),
		"fractional time":     strings.Replace(good, `1800000000000`, `1800000000000.5`, 1),
		"not JSON":            good[:40],
	} {
		if _, err := Check([]byte(bad), now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if ms, err := Check([]byte(`{"level":"info"}`), now); err != nil || ms != nil {
		t.Errorf("plain log line: %v %v", ms, err)
	}
}
