package e2e

import "testing"

// A fast function passes many invocation boundaries before the Telemetry
// API's buffered batch brings their platform.report: every invocation still
// gets its report's figure (ExtensionOverhead), in its record or, where its
// outcome went with its stream's document, in the platform document.
func TestFastInvocationsKeepTheirReports(t *testing.T) {
	e := start(t, nil)
	const n = 100
	for i := 0; i < n; i++ {
		if res, _ := e.invoke(t, "instruments=5&delay_ms=0"); res.Status != "success" {
			t.Fatalf("invocation %d: %+v", i, res)
		}
	}
	e.sb.Close()
	ds := e.log.docs(t)
	records, withOverhead := len(invocationDocs(ds)), platformValues(ds, "ExtensionOverhead")
	// ExtensionOverhead is report − runtimeDone: there only with the report.
	t.Logf("figure: %d fast invocations → %d records, %d with their platform.report (ExtensionOverhead)", n, records, withOverhead)
	if records != n || withOverhead != n {
		t.Errorf("%d records, %d with their report; want %d each", records, withOverhead, n)
	}
}
