// Package replay evaluates the generated CloudWatch alarms and composite
// alarms over a scenario — traffic minute by minute — and reports which
// notifications reach which SNS topic variable, and when: what promtool's
// rule tests are to Prometheus, for the streamlens Terraform.
//
// The model of CloudWatch (docs/slo.md, "Replaying alarms"):
//   - Every alarm is evaluated every minute. A datapoint is the statistic
//     over the trailing period, sliding: at minute T, datapoint k covers
//     [T−(k+1)·period, T−k·period).
//   - A record reaches CloudWatch Delay after the minute it is stamped in
//     (EMF, 2 min by default), AWS/Lambda's metrics AWSDelay after (1 min).
//   - A metric-math datapoint is missing when none of the alarm's metrics
//     has a value in the period (there is no timestamp to compute at);
//     otherwise the expression decides (see EvalMetricMath).
//   - treat_missing_data: notBreaching and breaching count a missing
//     datapoint as good or bad; missing and ignore judge the datapoints
//     present, and with none present go to INSUFFICIENT_DATA (missing) or
//     keep the state (ignore). ALARM when at least datapoints_to_alarm of
//     the evaluation_periods datapoints breach, else OK.
//   - Actions run on every state change to the state's topics (OK too,
//     from INSUFFICIENT_DATA as well), when actions_enabled. An alarm still
//     in ALARM (and notified) when the warmup ends is reported at time 0:
//     a condition that fires all along is not silence.
//   - A composite is ALARM while its rule is true. With actions_suppressor:
//     its actions do not run while the suppressor is in ALARM or within
//     extension_period after it left ALARM; on entering ALARM unsuppressed
//     it waits wait_period for the suppressor, then notifies if still in
//     ALARM; still in ALARM when a suppression ends, it notifies then. An
//     OK follows only an ALARM that was notified.
package replay

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// State is an alarm state.
type State string

// Alarm states.
const (
	OK           State = "OK"
	Alarm        State = "ALARM"
	Insufficient State = "INSUFFICIENT_DATA"
)

// Notification is one action run: a message to a topic variable.
type Notification struct {
	Minute int    `json:"minute"` // since the end of the warmup
	At     string `json:"at"`     // the same, as +1h02m
	Alarm  string `json:"alarm"`
	Key    string `json:"key"`
	State  State  `json:"state"`
	Topic  string `json:"topic"`
}

// Transition is a state change of an alarm.
type Transition struct {
	Minute   int    `json:"minute"`
	Key      string `json:"key"`
	From, To State
}

// Result is what a replay heard.
type Result struct {
	Scenario      string         `json:"scenario"`
	Notifications []Notification `json:"notifications"` // after the warmup
	Transitions   []Transition   `json:"transitions"`   // after the warmup
	Failures      []string       `json:"failures,omitempty"`
}

func rel(minute int) string {
	sign := "+"
	if minute < 0 {
		sign, minute = "-", -minute
	}
	d, h, mm := minute/1440, minute/60%24, minute%60
	if d > 0 {
		return fmt.Sprintf("%s%dd%02dh%02dm", sign, d, h, mm)
	}
	return fmt.Sprintf("%s%dh%02dm", sign, h, mm)
}

type compState struct {
	state      State
	notified   bool // this ALARM episode's actions ran
	waitUntil  int  // minute the wait_period ends; -1 none
	suppressed bool // was held back during this episode
}

// Run replays data through the alarms.
func Run(name string, mas []MetricAlarm, cas []CompositeAlarm, d *Data) (*Result, error) {
	res := &Result{Scenario: name}
	states := map[string]State{} // by alarm name
	for _, a := range mas {
		states[a.Name] = Insufficient
	}
	comps := make([]*compState, len(cas))
	rules := make([]ruleNode, len(cas))
	for i, c := range cas {
		states[c.Name] = Insufficient
		comps[i] = &compState{state: Insufficient, waitUntil: -1}
		r, err := parseRule(c.Rule)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Key, err)
		}
		rules[i] = r
	}
	leftAlarm := map[string]int{} // suppressor name → minute it left ALARM
	for _, c := range cas {
		if c.Suppressor != nil {
			if _, ok := states[c.Suppressor.Alarm]; !ok {
				return nil, fmt.Errorf("%s: suppressor %q is not an alarm of the stack", c.Key, c.Suppressor.Alarm)
			}
		}
	}
	notify := func(t int, key, alarm string, st State, topics []string) {
		if t < d.Warmup {
			return
		}
		for _, tp := range topics {
			res.Notifications = append(res.Notifications, Notification{Minute: t - d.Warmup, At: rel(t - d.Warmup), Alarm: alarm, Key: key, State: st, Topic: tp})
		}
	}
	transition := func(t int, key string, from, to State) {
		if t >= d.Warmup {
			res.Transitions = append(res.Transitions, Transition{Minute: t - d.Warmup, Key: key, From: from, To: to})
		}
	}
	for t := 1; t <= d.Minutes; t++ {
		if t == d.Warmup {
			// What fires through the warmup still fires: a condition the
			// baseline holds all along (a ticket at 0.95×) notified in the
			// warmup, and must not pass for silence. It is heard at 0.
			for _, a := range mas {
				if states[a.Name] == Alarm && a.ActionsEnabled {
					notify(t, a.Key, a.Name, Alarm, a.Actions[Alarm])
				}
			}
			for i, c := range cas {
				if states[c.Name] == Alarm && c.ActionsEnabled && (c.Suppressor == nil || comps[i].notified) {
					notify(t, c.Key, c.Name, Alarm, c.Actions[Alarm])
				}
			}
		}
		for _, a := range mas {
			next, err := evaluate(a, d, t, states[a.Name])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", a.Key, err)
			}
			if prev := states[a.Name]; next != prev {
				states[a.Name] = next
				if prev == Alarm {
					leftAlarm[a.Name] = t
				}
				transition(t, a.Key, prev, next)
				if a.ActionsEnabled {
					notify(t, a.Key, a.Name, next, a.Actions[next])
				}
			}
		}
		// Composites may name composites: settle in passes.
		for pass := 0; pass <= len(cas); pass++ {
			changed := false
			for i, c := range cas {
				v, err := rules[i].eval(states)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", c.Key, err)
				}
				next := OK
				if v {
					next = Alarm
				}
				if prev := states[c.Name]; next != prev {
					changed = true
					states[c.Name] = next
					if prev == Alarm {
						leftAlarm[c.Name] = t
					}
					transition(t, c.Key, prev, next)
					cs := comps[i]
					cs.state = next
					if c.Suppressor == nil {
						if c.ActionsEnabled {
							notify(t, c.Key, c.Name, next, c.Actions[next])
						}
						continue
					}
					if next == Alarm {
						cs.notified, cs.suppressed, cs.waitUntil = false, false, t+c.Suppressor.WaitMin
					} else if cs.notified && !isSuppressed(c.Suppressor, states, leftAlarm, t) && c.ActionsEnabled {
						notify(t, c.Key, c.Name, next, c.Actions[next])
					}
				}
			}
			if !changed {
				break
			}
		}
		for i, c := range cas {
			cs := comps[i]
			if c.Suppressor == nil || cs.state != Alarm || cs.notified {
				continue
			}
			if isSuppressed(c.Suppressor, states, leftAlarm, t) {
				cs.suppressed, cs.waitUntil = true, -1
				continue
			}
			if (cs.suppressed || t >= cs.waitUntil) && c.ActionsEnabled {
				cs.notified = true
				notify(t, c.Key, c.Name, Alarm, c.Actions[Alarm])
			}
		}
	}
	return res, nil
}

func isSuppressed(s *Suppressor, states map[string]State, left map[string]int, t int) bool {
	if states[s.Alarm] == Alarm {
		return true
	}
	l, ok := left[s.Alarm]
	return ok && t < l+s.ExtensionMin
}

// evaluate is a metric alarm's state at minute t.
func evaluate(a MetricAlarm, d *Data, t int, prev State) (State, error) {
	breaching, present := 0, 0
	for k := range a.EvaluationPeriods {
		v, err := datapoint(a, d, t, k)
		if err != nil {
			return prev, err
		}
		bad := false
		switch {
		case !v.OK && a.TreatMissing == "breaching":
			bad = true
		case !v.OK:
		default:
			present++
			bad = compare(a.Comparison, v.V, a.Threshold)
		}
		if bad {
			breaching++
		}
	}
	switch {
	case breaching >= a.DatapointsToAlarm:
		return Alarm, nil
	case present > 0 || a.TreatMissing == "breaching" || a.TreatMissing == "notBreaching":
		return OK, nil
	case a.TreatMissing == "ignore":
		return prev, nil
	}
	return Insufficient, nil
}

func compare(op string, v, th float64) bool {
	switch op {
	case "GreaterThanThreshold":
		return v > th
	case "GreaterThanOrEqualToThreshold":
		return v >= th
	case "LessThanThreshold":
		return v < th
	case "LessThanOrEqualToThreshold":
		return v <= th
	}
	return false
}

// datapoint is the alarm's k-th most recent datapoint at minute t.
func datapoint(a MetricAlarm, d *Data, t, k int) (Value, error) {
	ids := map[string]Value{}
	anyData := false
	var ret Query
	for _, q := range a.Queries {
		if q.ReturnData {
			ret = q
		}
		if q.Expression != "" {
			continue
		}
		delay := d.emfDelay
		if strings.HasPrefix(q.Namespace, "AWS/") {
			delay = d.awsDelay
		}
		to := t - k*q.PeriodMin
		from := to - q.PeriodMin
		visible := t - delay // minutes stamped before this are in CloudWatch
		key := q.key
		if key == "" {
			key = seriesKey(q.Namespace, q.Metric, q.Dims)
		}
		v, err := d.stat(key, q.Stat, from, min(to, visible))
		if err != nil {
			return Value{}, err
		}
		ids[q.ID] = v
		anyData = anyData || v.OK
	}
	if !anyData {
		return Value{}, nil
	}
	// Expressions may use one another: resolve in passes.
	pending := map[string]string{}
	for _, q := range a.Queries {
		if q.Expression != "" {
			pending[q.ID] = q.Expression
		}
	}
	for len(pending) > 0 {
		progress := false
		for _, id := range slices.Sorted(maps.Keys(pending)) {
			v, err := EvalMetricMath(pending[id], ids)
			if err != nil && strings.Contains(err.Error(), "unknown id") {
				continue
			}
			if err != nil {
				return Value{}, err
			}
			ids[id], progress = v, true
			delete(pending, id)
		}
		if !progress {
			_, err := EvalMetricMath(pending[slices.Sorted(maps.Keys(pending))[0]], ids)
			return Value{}, err
		}
	}
	return ids[ret.ID], nil
}

// ruleNode is a parsed composite alarm rule.
type ruleNode struct {
	op   string // ALARM, OK, INSUFFICIENT_DATA, TRUE, FALSE, AND, OR, NOT
	name string
	kids []ruleNode
}

func (r ruleNode) eval(states map[string]State) (bool, error) {
	switch r.op {
	case "TRUE":
		return true, nil
	case "FALSE":
		return false, nil
	case "ALARM", "OK", "INSUFFICIENT_DATA":
		s, ok := states[r.name]
		if !ok {
			return false, fmt.Errorf("rule names %q, not an alarm of the stack", r.name)
		}
		return string(s) == r.op, nil
	case "NOT":
		v, err := r.kids[0].eval(states)
		return !v, err
	}
	for _, k := range r.kids {
		v, err := k.eval(states)
		if err != nil {
			return false, err
		}
		if r.op == "AND" && !v {
			return false, nil
		}
		if r.op == "OR" && v {
			return true, nil
		}
	}
	return r.op == "AND", nil
}

type ruleParser struct {
	toks []tfTok
	pos  int
}

func parseRule(s string) (ruleNode, error) {
	toks, err := tfLex(s, true)
	if err != nil {
		return ruleNode{}, err
	}
	p := &ruleParser{toks: toks}
	n, err := p.expr("OR")
	if err != nil {
		return n, fmt.Errorf("alarm rule %q: %w", s, err)
	}
	if p.toks[p.pos].kind != "eof" {
		return n, fmt.Errorf("alarm rule %q: trailing input", s)
	}
	return n, nil
}

func (p *ruleParser) expr(op string) (ruleNode, error) {
	sub := func() (ruleNode, error) {
		if op == "OR" {
			return p.expr("AND")
		}
		return p.unary()
	}
	l, err := sub()
	if err != nil {
		return l, err
	}
	n := ruleNode{op: op, kids: []ruleNode{l}}
	for t := p.toks[p.pos]; t.kind == "id" && t.s == op; t = p.toks[p.pos] {
		p.pos++
		r, err := sub()
		if err != nil {
			return r, err
		}
		n.kids = append(n.kids, r)
	}
	if len(n.kids) == 1 {
		return l, nil
	}
	return n, nil
}

func (p *ruleParser) unary() (ruleNode, error) {
	t := p.toks[p.pos]
	p.pos++
	switch {
	case t.kind == "op" && t.s == "(":
		n, err := p.expr("OR")
		if err != nil {
			return n, err
		}
		if t := p.toks[p.pos]; t.kind != "op" || t.s != ")" {
			return n, fmt.Errorf("missing )")
		}
		p.pos++
		return n, nil
	case t.kind == "id" && t.s == "NOT":
		k, err := p.unary()
		return ruleNode{op: "NOT", kids: []ruleNode{k}}, err
	case t.kind == "id" && (t.s == "TRUE" || t.s == "FALSE"):
		return ruleNode{op: t.s}, nil
	case t.kind == "id" && (t.s == "ALARM" || t.s == "OK" || t.s == "INSUFFICIENT_DATA"):
		if a := p.toks[p.pos]; a.kind != "op" || a.s != "(" {
			return ruleNode{}, fmt.Errorf("%s without (", t.s)
		}
		name := p.toks[p.pos+1]
		if c := p.toks[p.pos+2]; (name.kind != "str" && name.kind != "id") || c.kind != "op" || c.s != ")" {
			return ruleNode{}, fmt.Errorf("%s(…): one alarm name expected", t.s)
		}
		p.pos += 3
		return ruleNode{op: t.s, name: name.s}, nil
	}
	return ruleNode{}, fmt.Errorf("unexpected %q", t.s)
}

// Check tests a result against a scenario's expectations and records the
// failures in it.
func (r *Result) Check(exp []Expect) {
	for _, e := range exp {
		n, late := 0, ""
		for _, x := range r.Notifications {
			if e.Topic != "" && e.Topic != "*" && x.Topic != e.Topic || e.State != "" && string(x.State) != e.State ||
				e.Alarm != "" && !strings.Contains(x.Alarm, e.Alarm) {
				continue
			}
			n++
			if e.By > 0 && x.Minute > e.By.min() && late == "" {
				late = x.At
			}
		}
		what := fmt.Sprintf("topic %q state %q alarm %q", e.Topic, e.State, e.Alarm)
		if e.Why != "" {
			what += " (" + e.Why + ")"
		}
		if e.Min != nil && n < *e.Min {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d notifications, want at least %d", what, n, *e.Min))
		}
		if e.Max != nil && n > *e.Max {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d notifications, want at most %d", what, n, *e.Max))
		}
		if late != "" {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: a notification at %s, want all by %s", what, late, rel(e.By.min())))
		}
	}
}

// Replay builds the scenario's data and runs it through the stack's alarms,
// checking the scenario's expectations.
func Replay(st *Stack, s *Scenario) (*Result, error) {
	mas, cas, err := st.Alarms()
	if err != nil {
		return nil, err
	}
	d, err := s.Build()
	if err != nil {
		return nil, err
	}
	res, err := Run(s.Name, mas, cas, d)
	if err != nil {
		return nil, err
	}
	res.Check(s.Expect)
	return res, nil
}
