package replay

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
)

// This file evaluates CloudWatch metric math for one datapoint: what the
// generated alarms use (IF, FILL with a number, + - * /, comparisons,
// AND/OR/NOT and &&, ||, !). A series without a datapoint in the period is
// "missing"; arithmetic or a comparison with a missing operand is missing,
// as CloudWatch aligns series on timestamps and a timestamp one series lacks
// has no result; FILL(x, v) turns missing into v; IF with a missing
// condition is missing. Division by zero is missing (CloudWatch drops
// non-finite values). Other functions are refused by name.

// Value is one datapoint of a series: OK false when the period has none.
type Value struct {
	V  float64
	OK bool
}

// mmNode is a parsed expression.
type mmNode func(ids map[string]Value) (Value, error)

// The same few expressions are evaluated every minute of a replay: parsed
// once.
var (
	parsedMu sync.Mutex
	parsed   = map[string]mmNode{}
)

type mmParser struct {
	toks []tfTok
	pos  int
}

// EvalMetricMath evaluates expr with the datapoints of the series it names.
func EvalMetricMath(expr string, ids map[string]Value) (Value, error) {
	parsedMu.Lock()
	n, ok := parsed[expr]
	parsedMu.Unlock()
	if !ok {
		// Metric math spells logic as words too; the Terraform lexer reads
		// them as identifiers, handled below.
		toks, err := tfLex(expr, false)
		if err != nil {
			return Value{}, err
		}
		p := &mmParser{toks: toks}
		if n, err = p.or(); err != nil {
			return Value{}, fmt.Errorf("metric math %q: %w", expr, err)
		}
		if p.toks[p.pos].kind != "eof" {
			return Value{}, fmt.Errorf("metric math %q: trailing input", expr)
		}
		parsedMu.Lock()
		parsed[expr] = n
		parsedMu.Unlock()
	}
	v, err := n(ids)
	if err != nil {
		return Value{}, fmt.Errorf("metric math %q: %w", expr, err)
	}
	return v, nil
}

func (p *mmParser) is(ops ...string) string {
	t := p.toks[p.pos]
	for _, op := range ops {
		if (t.kind == "op" || t.kind == "id") && t.s == op {
			p.pos++
			return op
		}
	}
	return ""
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func arith(op string, l, r float64) float64 {
	switch op {
	case "OR", "||":
		return b2f(l != 0 || r != 0)
	case "AND", "&&":
		return b2f(l != 0 && r != 0)
	case "==":
		return b2f(l == r)
	case "!=":
		return b2f(l != r)
	case ">":
		return b2f(l > r)
	case "<":
		return b2f(l < r)
	case ">=":
		return b2f(l >= r)
	case "<=":
		return b2f(l <= r)
	case "+":
		return l + r
	case "-":
		return l - r
	case "*":
		return l * r
	}
	return l / r
}

func (p *mmParser) bin(next func() (mmNode, error), ops ...string) (mmNode, error) {
	l, err := next()
	if err != nil {
		return nil, err
	}
	for {
		op := p.is(ops...)
		if op == "" {
			return l, nil
		}
		r, err := next()
		if err != nil {
			return nil, err
		}
		left := l
		l = func(ids map[string]Value) (Value, error) {
			a, err := left(ids)
			if err != nil {
				return a, err
			}
			b, err := r(ids)
			if err != nil || !a.OK || !b.OK {
				return Value{}, err
			}
			v := arith(op, a.V, b.V)
			if math.IsInf(v, 0) || math.IsNaN(v) {
				return Value{}, nil
			}
			return Value{V: v, OK: true}, nil
		}
	}
}

func (p *mmParser) or() (mmNode, error)  { return p.bin(p.and, "OR", "||") }
func (p *mmParser) and() (mmNode, error) { return p.bin(p.cmp, "AND", "&&") }
func (p *mmParser) cmp() (mmNode, error) {
	return p.bin(p.add, "==", "!=", ">=", "<=", ">", "<")
}
func (p *mmParser) add() (mmNode, error) { return p.bin(p.mul, "+", "-") }
func (p *mmParser) mul() (mmNode, error) { return p.bin(p.unary, "*", "/") }

func (p *mmParser) unary() (mmNode, error) {
	if op := p.is("NOT", "!", "-"); op != "" {
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return func(ids map[string]Value) (Value, error) {
			v, err := x(ids)
			if err != nil || !v.OK {
				return Value{}, err
			}
			if op == "-" {
				return Value{V: -v.V, OK: true}, nil
			}
			return Value{V: b2f(v.V == 0), OK: true}, nil
		}, nil
	}
	return p.primary()
}

func (p *mmParser) args() ([]mmNode, error) {
	var out []mmNode
	if p.is("(") == "" {
		return nil, errors.New("( expected")
	}
	for p.is(")") == "" {
		if p.toks[p.pos].kind == "eof" {
			return nil, errors.New("missing )")
		}
		v, err := p.or()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		p.is(",")
	}
	return out, nil
}

func (p *mmParser) primary() (mmNode, error) {
	t := p.toks[p.pos]
	p.pos++
	switch t.kind {
	case "num":
		return func(map[string]Value) (Value, error) { return Value{V: t.n, OK: true}, nil }, nil
	case "op":
		if t.s == "(" {
			v, err := p.or()
			if err != nil {
				return nil, err
			}
			if p.is(")") == "" {
				return nil, errors.New("missing )")
			}
			return v, nil
		}
	case "id":
		switch strings.ToUpper(t.s) {
		case "IF":
			a, err := p.args()
			if err != nil {
				return nil, err
			}
			if len(a) != 2 && len(a) != 3 {
				return nil, errors.New("IF takes 2 or 3 arguments")
			}
			return func(ids map[string]Value) (Value, error) {
				c, err := a[0](ids)
				switch {
				case err != nil || !c.OK:
					return Value{}, err
				case c.V != 0:
					return a[1](ids)
				case len(a) == 3:
					return a[2](ids)
				}
				return Value{}, nil
			}, nil
		case "FILL":
			a, err := p.args()
			if err != nil {
				return nil, err
			}
			// The fill value must be a number: FILL(x, 0), not REPEAT.
			if len(a) != 2 || p.toks[p.pos-2].kind != "num" || p.toks[p.pos-3].s != "," {
				return nil, errors.New("FILL takes a series and a number (REPEAT and LINEAR are not replayed)")
			}
			return func(ids map[string]Value) (Value, error) {
				x, err := a[0](ids)
				if err != nil || x.OK {
					return x, err
				}
				return a[1](ids)
			}, nil
		}
		if p.toks[p.pos].kind == "op" && p.toks[p.pos].s == "(" {
			return nil, fmt.Errorf("function %s is not replayed", t.s)
		}
		return func(ids map[string]Value) (Value, error) {
			v, ok := ids[t.s]
			if !ok {
				return Value{}, fmt.Errorf("unknown id %s", t.s)
			}
			return v, nil
		}, nil
	}
	return nil, fmt.Errorf("unexpected %s", strconv.Quote(t.s))
}
