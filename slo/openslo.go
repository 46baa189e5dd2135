package slo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// openSLO is the part of an OpenSLO v1 SLO document streamlens reads: a
// ratio indicator (inline) of bad over total events from CloudWatch, one
// rolling time window, one objective.
type openSLO struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		Description     string `yaml:"description"`
		BudgetingMethod string `yaml:"budgetingMethod"`
		TimeWindow      []struct {
			Duration  string `yaml:"duration"`
			IsRolling bool   `yaml:"isRolling"`
		} `yaml:"timeWindow"`
		Indicator *struct {
			Spec struct {
				RatioMetric *struct {
					Counter bool         `yaml:"counter"`
					Good    *openSLOPart `yaml:"good"`
					Bad     *openSLOPart `yaml:"bad"`
					Total   *openSLOPart `yaml:"total"`
				} `yaml:"ratioMetric"`
			} `yaml:"spec"`
		} `yaml:"indicator"`
		Objectives []struct {
			Target float64 `yaml:"target"`
		} `yaml:"objectives"`
	} `yaml:"spec"`
}

type openSLOPart struct {
	MetricSource struct {
		Type string `yaml:"type"`
		Spec struct {
			MetricName string `yaml:"metricName"`
			Stat       string `yaml:"stat"`
		} `yaml:"spec"`
	} `yaml:"metricSource"`
}

// ParseOpenSLO reads OpenSLO v1 documents (YAML, several in one file) and
// returns their SLOs as specs, checked like Parse's. Documents of other
// kinds (Service, AlertPolicy…) are skipped; an SLO streamlens cannot
// express — not a ratio of CloudWatch counts, a "good" instead of a "bad"
// count, a calendar window — is an error that says why.
func ParseOpenSLO(b []byte) ([]Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var specs []Spec
	for i := 0; ; i++ {
		var d openSLO
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("openslo: document %d: %w", i+1, err)
		}
		if d.Kind != "SLO" {
			continue
		}
		where := fmt.Sprintf("openslo: SLO %q", d.Metadata.Name)
		if d.APIVersion != "openslo/v1" {
			return nil, fmt.Errorf("%s: apiVersion %q: want openslo/v1", where, d.APIVersion)
		}
		s := d.Spec
		if s.BudgetingMethod != "" && s.BudgetingMethod != "Occurrences" {
			return nil, fmt.Errorf("%s: budgetingMethod %s: streamlens counts occurrences (events)", where, s.BudgetingMethod)
		}
		if len(s.TimeWindow) != 1 || !s.TimeWindow[0].IsRolling {
			return nil, fmt.Errorf("%s: want one rolling timeWindow", where)
		}
		days, err := openSLODays(s.TimeWindow[0].Duration)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if len(s.Objectives) != 1 {
			return nil, fmt.Errorf("%s: want one objective", where)
		}
		if s.Indicator == nil || s.Indicator.Spec.RatioMetric == nil {
			return nil, fmt.Errorf("%s: want an inline indicator with a ratioMetric (indicatorRef is not read)", where)
		}
		r := s.Indicator.Spec.RatioMetric
		if r.Good != nil || r.Bad == nil || r.Total == nil {
			return nil, fmt.Errorf("%s: want ratioMetric bad and total (streamlens's metrics count bad events)", where)
		}
		var qs [2]Query
		for j, p := range []*openSLOPart{r.Bad, r.Total} {
			if p.MetricSource.Type != "CloudWatch" {
				return nil, fmt.Errorf("%s: metricSource type %q: want CloudWatch", where, p.MetricSource.Type)
			}
			qs[j] = Query{Metric: p.MetricSource.Spec.MetricName, Stat: p.MetricSource.Spec.Stat}
		}
		spec := Spec{Name: d.Metadata.Name, Description: s.Description, Objective: s.Objectives[0].Target,
			WindowDays: days, SLI: SLI{Bad: qs[0], Total: qs[1]}}
		if ex := d.Metadata.Annotations[ExcludeAnnotation]; ex != "" {
			for _, item := range strings.Split(ex, ",") {
				metric, stat, ok := strings.Cut(strings.TrimSpace(item), "/")
				if !ok {
					return nil, fmt.Errorf("%s: %s %q: want metric/stat, comma-separated", where, ExcludeAnnotation, ex)
				}
				spec.SLI.Exclude = append(spec.SLI.Exclude, Query{Metric: metric, Stat: stat})
			}
		}
		specs = append(specs, spec)
	}
	return check(specs)
}

// ExcludeAnnotation carries SLI.Exclude in an OpenSLO SLO's metadata
// (OpenSLO has no way to say it): "metric/stat,metric/stat".
const ExcludeAnnotation = "streamlens.dev/exclude"

// openSLODays reads an OpenSLO duration in whole days ("28d", or "4w").
func openSLODays(d string) (int, error) {
	n, err := strconv.Atoi(strings.TrimRight(d, "dw"))
	if err != nil || n < 1 || !strings.HasSuffix(d, "d") && !strings.HasSuffix(d, "w") {
		return 0, fmt.Errorf("timeWindow duration %q: want whole days (28d) or weeks (4w)", d)
	}
	if strings.HasSuffix(d, "w") {
		n *= 7
	}
	return n, nil
}
