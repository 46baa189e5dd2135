package replay

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// A Stack is Terraform configuration as the replay reads it: an optional
// root (a main.tf.json with module blocks, like deploy/) and the modules it
// calls, each the decoded JSON of a generated *.tf.json. Variables take, in
// order: an override (Vars), the value the root passes, the default.
//
// SNS topic lists are kept symbolic: a *_sns_topic_arns variable nobody set
// is the list holding its own name, so an alarm's actions say which topic
// variable they notify (the root's, when there is a root).
type Stack struct {
	root *module
	mods map[string]*module // by the root's module name (or the given name without a root)
}

type module struct {
	name   string
	doc    map[string]any
	inputs map[string]any // what the root passes (templates in the root's scope)
	parent *module
	vars   map[string]any // overrides
	stack  *Stack
	busy   map[string]bool
}

// NewStack builds a stack. root may be nil: then every module stands alone.
// modules maps a module's directory name (the last element of a root's
// source, e.g. "alarms") to its decoded JSON. vars overrides variables:
// "name" a root variable (or, without a root, every module's), "module.name"
// one module's.
func NewStack(root map[string]any, modules map[string]map[string]any, vars map[string]any) (*Stack, error) {
	st := &Stack{mods: map[string]*module{}}
	split := func(prefix string) map[string]any {
		out := map[string]any{}
		for k, v := range vars {
			if p, name, ok := strings.Cut(k, "."); ok && p == prefix {
				out[name] = v
			} else if !ok && (prefix == "" || root == nil) {
				out[k] = v
			}
		}
		return out
	}
	if root == nil {
		for _, name := range slices.Sorted(maps.Keys(modules)) {
			st.mods[name] = &module{name: name, doc: modules[name], vars: split(name), stack: st}
		}
		return st, nil
	}
	st.root = &module{name: "root", doc: root, vars: split(""), stack: st}
	blocks, _ := root["module"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(blocks)) {
		b, _ := blocks[name].(map[string]any)
		src, _ := b["source"].(string)
		doc, ok := modules[path.Base(src)]
		if !ok {
			continue // a module without alarms (dashboards, insights)
		}
		in := maps.Clone(b)
		delete(in, "source")
		st.mods[name] = &module{name: name, doc: doc, inputs: in, parent: st.root, vars: split(name), stack: st}
	}
	if len(st.mods) == 0 {
		return nil, errors.New("the root calls none of the given modules")
	}
	return st, nil
}

func (m *module) section(name string) map[string]any {
	s, _ := m.doc[name].(map[string]any)
	return s
}

func (m *module) ref(p []string) (any, error) {
	key := strings.Join(p, ".")
	if m.busy == nil {
		m.busy = map[string]bool{}
	}
	if m.busy[key] {
		return nil, fmt.Errorf("%s: %s refers to itself", m.name, key)
	}
	m.busy[key] = true
	defer delete(m.busy, key)
	switch {
	case p[0] == "var" && len(p) == 2:
		return m.variable(p[1])
	case p[0] == "local" && len(p) == 2:
		v, ok := m.section("locals")[p[1]]
		if !ok {
			return nil, fmt.Errorf("%s: no local %s", m.name, p[1])
		}
		return evalDeep(v, m)
	case p[0] == "module" && len(p) == 3:
		sub, ok := m.stack.mods[p[1]]
		if !ok {
			return nil, fmt.Errorf("module %s is not in the replayed stack", p[1])
		}
		out, _ := sub.section("output")[p[2]].(map[string]any)
		if out == nil {
			return nil, fmt.Errorf("module %s has no output %s", p[1], p[2])
		}
		return evalDeep(out["value"], sub)
	case len(p) == 3 && strings.HasPrefix(p[0], "aws_"):
		typ, _ := m.section("resource")[p[0]].(map[string]any)
		r, _ := typ[p[1]].(map[string]any)
		if r == nil {
			return nil, fmt.Errorf("%s: no resource %s.%s", m.name, p[0], p[1])
		}
		v, ok := r[p[2]]
		if !ok {
			return nil, fmt.Errorf("%s: %s.%s has no %s the replay can read", m.name, p[0], p[1], p[2])
		}
		return evalDeep(v, m)
	}
	return nil, fmt.Errorf("%s: reference %s is not supported by the replay", m.name, key)
}

func (m *module) variable(name string) (any, error) {
	if v, ok := m.vars[name]; ok {
		return v, nil
	}
	if v, ok := m.inputs[name]; ok {
		return evalDeep(v, m.parent)
	}
	decl, ok := m.section("variable")[name].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: no variable %s", m.name, name)
	}
	if strings.HasSuffix(name, "_sns_topic_arns") {
		return []any{name}, nil // symbolic: the topic variable itself
	}
	def, ok := decl["default"]
	if !ok {
		return nil, fmt.Errorf("%s: variable %s has no default: give it a value", m.name, name)
	}
	return def, nil
}

// Query is one row of an alarm's metric_query (or the single metric of a
// plain alarm, as id "m").
type Query struct {
	ID         string
	Expression string
	Namespace  string
	Metric     string
	Stat       string
	Dims       map[string]string
	PeriodMin  int
	ReturnData bool
	key        string // of the series in Data
}

// MetricAlarm is an aws_cloudwatch_metric_alarm with every value resolved.
type MetricAlarm struct {
	Key               string // module.resource key
	Name              string
	Description       string
	Comparison        string
	Threshold         float64
	EvaluationPeriods int
	DatapointsToAlarm int
	TreatMissing      string
	ActionsEnabled    bool
	Actions           map[State][]string // topic variables per new state
	Queries           []Query
	PeriodMin         int // of the returned datapoint
}

// Suppressor is a composite alarm's actions_suppressor.
type Suppressor struct {
	Alarm                 string
	WaitMin, ExtensionMin int
}

// CompositeAlarm is an aws_cloudwatch_composite_alarm with every value resolved.
type CompositeAlarm struct {
	Key, Name, Description, Rule string
	ActionsEnabled               bool
	Actions                      map[State][]string
	Suppressor                   *Suppressor
}

func num(v any, what string) (float64, error) {
	f, ok := toNum(v)
	if !ok {
		return 0, fmt.Errorf("%s: %v is not a number", what, v)
	}
	return f, nil
}

func minutes(v any, what string) (int, error) {
	f, err := num(v, what)
	if err != nil {
		return 0, err
	}
	if f < 60 || int(f)%60 != 0 {
		return 0, fmt.Errorf("%s: %v s: the replay evaluates whole minutes", what, f)
	}
	return int(f) / 60, nil
}

func topics(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, t := range l {
		out = append(out, fmt.Sprint(t))
	}
	return out
}

// Alarms resolves every alarm of the stack (resources whose count is 0 left
// out), sorted by key.
func (st *Stack) Alarms() ([]MetricAlarm, []CompositeAlarm, error) {
	var mas []MetricAlarm
	var cas []CompositeAlarm
	for _, mn := range slices.Sorted(maps.Keys(st.mods)) {
		m := st.mods[mn]
		res := m.section("resource")
		for _, typ := range []string{"aws_cloudwatch_metric_alarm", "aws_cloudwatch_composite_alarm"} {
			rs, _ := res[typ].(map[string]any)
			for _, k := range slices.Sorted(maps.Keys(rs)) {
				raw, _ := rs[k].(map[string]any)
				if c, ok := raw["count"]; ok {
					// count first: a resource Terraform does not create may
					// hold what the replay cannot evaluate.
					n, err := evalDeep(c, m)
					if err != nil {
						return nil, nil, fmt.Errorf("%s.%s count: %w", mn, k, err)
					}
					if f, _ := toNum(n); f == 0 {
						continue
					}
				}
				r, err := evalDeep(raw, m)
				if err != nil {
					return nil, nil, fmt.Errorf("%s.%s: %w", mn, k, err)
				}
				a := r.(map[string]any)
				key := mn + "." + k
				if typ == "aws_cloudwatch_composite_alarm" {
					key = mn + ".composite." + k // a composite may share a metric alarm's resource name
				}
				if typ == "aws_cloudwatch_metric_alarm" {
					ma, err := metricAlarm(key, a)
					if err != nil {
						return nil, nil, fmt.Errorf("%s: %w", key, err)
					}
					mas = append(mas, ma)
				} else {
					ca, err := compositeAlarm(key, a)
					if err != nil {
						return nil, nil, fmt.Errorf("%s: %w", key, err)
					}
					cas = append(cas, ca)
				}
			}
		}
	}
	return mas, cas, nil
}

func actions(a map[string]any) map[State][]string {
	return map[State][]string{Alarm: topics(a["alarm_actions"]), OK: topics(a["ok_actions"]), Insufficient: topics(a["insufficient_data_actions"])}
}

func enabled(a map[string]any) bool {
	e, ok := a["actions_enabled"].(bool)
	return !ok || e
}

func metricAlarm(key string, a map[string]any) (MetricAlarm, error) {
	ma := MetricAlarm{Key: key, ActionsEnabled: enabled(a), Actions: actions(a), TreatMissing: "missing"}
	ma.Name, _ = a["alarm_name"].(string)
	ma.Description, _ = a["alarm_description"].(string)
	ma.Comparison, _ = a["comparison_operator"].(string)
	if t, ok := a["treat_missing_data"].(string); ok {
		ma.TreatMissing = t
	}
	if _, ok := a["threshold_metric_id"]; ok {
		return ma, errors.New("anomaly-detection thresholds are not replayed (leave ttfb_anomaly_alarm off)")
	}
	var err error
	if ma.Threshold, err = num(a["threshold"], "threshold"); err != nil {
		return ma, err
	}
	ep, err := num(a["evaluation_periods"], "evaluation_periods")
	if err != nil {
		return ma, err
	}
	ma.EvaluationPeriods, ma.DatapointsToAlarm = int(ep), int(ep)
	if d, ok := a["datapoints_to_alarm"]; ok {
		n, err := num(d, "datapoints_to_alarm")
		if err != nil {
			return ma, err
		}
		ma.DatapointsToAlarm = int(n)
	}
	dims := func(v any) map[string]string {
		out := map[string]string{}
		for k, x := range v.(map[string]any) {
			out[k] = fmt.Sprint(x)
		}
		return out
	}
	if mq, ok := a["metric_query"].([]any); ok {
		for _, row := range mq {
			r := row.(map[string]any)
			q := Query{ID: fmt.Sprint(r["id"])}
			q.ReturnData, _ = r["return_data"].(bool)
			if e, ok := r["expression"].(string); ok {
				q.Expression = e
			} else {
				mt, _ := r["metric"].(map[string]any)
				if mt == nil {
					return ma, fmt.Errorf("query %s: neither expression nor metric", q.ID)
				}
				q.Namespace, q.Metric, q.Stat = fmt.Sprint(mt["namespace"]), fmt.Sprint(mt["metric_name"]), fmt.Sprint(mt["stat"])
				q.Dims = dims(mt["dimensions"])
				q.key = seriesKey(q.Namespace, q.Metric, q.Dims)
				if q.PeriodMin, err = minutes(mt["period"], "query "+q.ID+" period"); err != nil {
					return ma, err
				}
				ma.PeriodMin = max(ma.PeriodMin, q.PeriodMin)
			}
			ma.Queries = append(ma.Queries, q)
		}
	} else {
		q := Query{ID: "m", ReturnData: true, Namespace: fmt.Sprint(a["namespace"]), Metric: fmt.Sprint(a["metric_name"]), Stat: fmt.Sprint(a["statistic"])}
		if es, ok := a["extended_statistic"]; ok {
			q.Stat = fmt.Sprint(es)
		}
		q.Dims = dims(a["dimensions"])
		q.key = seriesKey(q.Namespace, q.Metric, q.Dims)
		if q.PeriodMin, err = minutes(a["period"], "period"); err != nil {
			return ma, err
		}
		ma.PeriodMin = q.PeriodMin
		ma.Queries = []Query{q}
	}
	n := 0
	for _, q := range ma.Queries {
		if q.ReturnData {
			n++
		}
	}
	if n != 1 {
		return ma, fmt.Errorf("%d queries return data, want 1", n)
	}
	return ma, nil
}

func compositeAlarm(key string, a map[string]any) (CompositeAlarm, error) {
	ca := CompositeAlarm{Key: key, ActionsEnabled: enabled(a), Actions: actions(a)}
	ca.Name, _ = a["alarm_name"].(string)
	ca.Description, _ = a["alarm_description"].(string)
	ca.Rule, _ = a["alarm_rule"].(string)
	if s, ok := a["actions_suppressor"].([]any); ok && len(s) > 0 {
		sm := s[0].(map[string]any)
		sp := &Suppressor{Alarm: fmt.Sprint(sm["alarm"])}
		w, err := num(sm["wait_period"], "wait_period")
		if err != nil {
			return ca, err
		}
		e, err := num(sm["extension_period"], "extension_period")
		if err != nil {
			return ca, err
		}
		// CloudWatch counts them in seconds; the replay steps in minutes,
		// rounding up (a 90 s wait is still waiting at +1 min).
		sp.WaitMin, sp.ExtensionMin = (int(w)+59)/60, (int(e)+59)/60
		if sp.Alarm != "" {
			ca.Suppressor = sp
		}
	}
	return ca, nil
}
