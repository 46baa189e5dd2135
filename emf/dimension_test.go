package emf

import (
	"strings"
	"testing"
)

func TestDimensionValuesAreMadeValidVisiblyAndDistinctly(t *testing.T) {
	long := strings.Repeat("x", 2000)
	cases := map[string]string{
		"SPY":     "SPY",
		"BRK B":   "BRK B",
		"étf":     "%c3%a9tf",
		"\t":      "%09",
		" ":       "%20",
		"   ":     "%20%20%20",
		"a%b":     "a%25b",
		"":        "%00",
		"line\nx": "line%0ax",
		"café":    "caf%c3%a9",
	}
	seen := map[string]string{}
	for in, want := range cases {
		got, changed := DimensionValue(in)
		if got != want || changed != (in != want) {
			t.Errorf("%q → %q (changed %v), want %q", in, got, changed, want)
		}
		if !ValidDimensionValue(got) {
			t.Errorf("%q → %q is not valid", in, got)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("%q and %q both became %q", in, prev, got)
		}
		seen[got] = in
	}
	a, _ := DimensionValue(long)
	b, _ := DimensionValue(long + "y")
	if len(a) != MaxDimensionValue || !ValidDimensionValue(a) || a == b {
		t.Errorf("long values: %d chars, distinct %v", len(a), a != b)
	}
	// "a%b" and the escaped form of something else never meet: % is escaped.
	if x, _ := DimensionValue("a%25b"); x == "a%25b" {
		t.Error("an input that looks escaped is kept as is")
	}
}
