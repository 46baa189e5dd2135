package e2e

import "testing"

// A fast function passes many invocation boundaries before the Telemetry
// API's buffered batch brings their platform.report: every invocation record
// still carries its report (billed duration, ExtensionOverhead).
func TestFastInvocationsKeepTheirReports(t *testing.T) {
	e := start(t, nil)
	const n = 100
	for i := 0; i < n; i++ {
		if res, _ := e.invoke(t, "instruments=5&delay_ms=0"); res.Status != "success" {
			t.Fatalf("invocation %d: %+v", i, res)
		}
	}
	e.sb.Close()
	records, withOverhead := 0, 0
	for _, d := range e.log.docs(t) {
		if _, ok := d["ColdStart"]; !ok {
			continue
		}
		records++
		if _, ok := d["ExtensionOverhead"]; ok {
			withOverhead++
		}
	}
	// ExtensionOverhead is report − runtimeDone: there only with the report.
	t.Logf("figure: %d fast invocations → %d records, %d with their platform.report (ExtensionOverhead)", n, records, withOverhead)
	if records != n || withOverhead != n {
		t.Errorf("%d records, %d with their report; want %d each", records, withOverhead, n)
	}
}
