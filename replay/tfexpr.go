package replay

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// This file evaluates the subset of Terraform's expression language the
// generated modules use in the fields an alarm's behaviour depends on:
// references (var., local., module.<m>.<output>, <resource type>.<name>.<attr>),
// literals, arithmetic, comparisons, && || !, the conditional operator,
// indexing and concat(). Anything else is an error naming it, so that a
// generator change the replay cannot follow fails loudly instead of being
// replayed wrong.

type tfTok struct {
	kind string // "id", "num", "str", "op", "eof"
	s    string
	n    float64
}

// tfLex splits src into tokens; dash lets identifiers hold '-' (Terraform
// names may; metric math's n-c is a subtraction).
func tfLex(src string, dash bool) ([]tfTok, error) {
	var out []tfTok
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '"':
			var sb strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != '"'; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				sb.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated string in %q", src)
			}
			out = append(out, tfTok{kind: "str", s: sb.String()})
			i = j + 1
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			n, err := strconv.ParseFloat(src[i:j], 64)
			if err != nil {
				return nil, fmt.Errorf("number %q: %w", src[i:j], err)
			}
			out = append(out, tfTok{kind: "num", n: n})
			i = j
		case unicode.IsLetter(rune(c)) || c == '_':
			j := i
			for j < len(src) && (unicode.IsLetter(rune(src[j])) || unicode.IsDigit(rune(src[j])) || src[j] == '_' || dash && src[j] == '-') {
				j++
			}
			out = append(out, tfTok{kind: "id", s: src[i:j]})
			i = j
		default:
			two := ""
			if i+1 < len(src) {
				two = src[i : i+2]
			}
			switch two {
			case "==", "!=", ">=", "<=", "&&", "||":
				out = append(out, tfTok{kind: "op", s: two})
				i += 2
				continue
			}
			if !strings.ContainsRune(".[](),?:+-*/<>!", rune(c)) {
				return nil, fmt.Errorf("unexpected %q in %q", c, src)
			}
			out = append(out, tfTok{kind: "op", s: string(c)})
			i++
		}
	}
	return append(out, tfTok{kind: "eof"}), nil
}

// tfScope resolves the references of one module.
type tfScope interface {
	ref(path []string) (any, error)
}

type tfParser struct {
	toks  []tfTok
	pos   int
	scope tfScope
}

func (p *tfParser) peek() tfTok { return p.toks[p.pos] }
func (p *tfParser) next() tfTok { t := p.toks[p.pos]; p.pos++; return t }
func (p *tfParser) accept(op string) bool {
	if t := p.peek(); t.kind == "op" && t.s == op {
		p.pos++
		return true
	}
	return false
}

// evalTF evaluates one Terraform expression (the inside of "${…}").
func evalTF(src string, scope tfScope) (any, error) {
	toks, err := tfLex(src, true)
	if err != nil {
		return nil, err
	}
	p := &tfParser{toks: toks, scope: scope}
	v, err := p.cond()
	if err != nil {
		return nil, fmt.Errorf("%q: %w", src, err)
	}
	if p.peek().kind != "eof" {
		return nil, fmt.Errorf("%q: trailing %q", src, p.peek().s)
	}
	return v, nil
}

func (p *tfParser) cond() (any, error) {
	c, err := p.or()
	if err != nil || !p.accept("?") {
		return c, err
	}
	a, err := p.cond()
	if err != nil {
		return nil, err
	}
	if !p.accept(":") {
		return nil, errors.New("conditional without ':'")
	}
	b, err := p.cond()
	if err != nil {
		return nil, err
	}
	cb, ok := c.(bool)
	if !ok {
		return nil, fmt.Errorf("condition is %T, not bool", c)
	}
	if cb {
		return a, nil
	}
	return b, nil
}

func (p *tfParser) binary(next func() (any, error), ops ...string) (any, error) {
	l, err := next()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		found := false
		for _, op := range ops {
			if t.kind == "op" && t.s == op {
				found = true
			}
		}
		if !found {
			return l, nil
		}
		p.pos++
		r, err := next()
		if err != nil {
			return nil, err
		}
		if l, err = tfApply(t.s, l, r); err != nil {
			return nil, err
		}
	}
}

func (p *tfParser) or() (any, error)  { return p.binary(p.and, "||") }
func (p *tfParser) and() (any, error) { return p.binary(p.eq, "&&") }
func (p *tfParser) eq() (any, error)  { return p.binary(p.cmp, "==", "!=") }
func (p *tfParser) cmp() (any, error) { return p.binary(p.add, ">", "<", ">=", "<=") }
func (p *tfParser) add() (any, error) { return p.binary(p.mul, "+", "-") }
func (p *tfParser) mul() (any, error) { return p.binary(p.unary, "*", "/") }

func (p *tfParser) unary() (any, error) {
	if p.accept("!") {
		v, err := p.unary()
		if err != nil {
			return nil, err
		}
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("! of %T", v)
		}
		return !b, nil
	}
	if p.accept("-") {
		v, err := p.unary()
		if err != nil {
			return nil, err
		}
		return tfApply("-", 0.0, v)
	}
	return p.postfix()
}

func (p *tfParser) postfix() (any, error) {
	t := p.next()
	var v any
	switch t.kind {
	case "num":
		v = t.n
	case "str":
		v = t.s
	case "op":
		switch t.s {
		case "(":
			x, err := p.cond()
			if err != nil {
				return nil, err
			}
			if !p.accept(")") {
				return nil, errors.New("missing )")
			}
			v = x
		case "[":
			list := []any{}
			for !p.accept("]") {
				x, err := p.cond()
				if err != nil {
					return nil, err
				}
				list = append(list, x)
				p.accept(",")
			}
			v = list
		default:
			return nil, fmt.Errorf("unexpected %q", t.s)
		}
	case "id":
		switch t.s {
		case "true", "false":
			v = t.s == "true"
		default:
			if p.accept("(") {
				return p.call(t.s)
			}
			path := []string{t.s}
			for p.peek().kind == "op" && p.peek().s == "." {
				p.pos++
				a := p.next()
				if a.kind != "id" {
					return nil, errors.New("attribute name expected after '.'")
				}
				path = append(path, a.s)
			}
			x, err := p.scope.ref(path)
			if err != nil {
				return nil, err
			}
			v = x
		}
	default:
		return nil, errors.New("unexpected end")
	}
	for p.accept("[") {
		k, err := p.cond()
		if err != nil {
			return nil, err
		}
		if !p.accept("]") {
			return nil, errors.New("missing ]")
		}
		switch c := v.(type) {
		case map[string]any:
			ks, _ := k.(string)
			x, ok := c[ks]
			if !ok {
				return nil, fmt.Errorf("no key %v", k)
			}
			v = x
		case []any:
			i, _ := k.(float64)
			if int(i) < 0 || int(i) >= len(c) {
				return nil, fmt.Errorf("index %v out of range", k)
			}
			v = c[int(i)]
		default:
			return nil, fmt.Errorf("index into %T", v)
		}
	}
	return v, nil
}

func (p *tfParser) call(name string) (any, error) {
	var args []any
	for !p.accept(")") {
		x, err := p.cond()
		if err != nil {
			return nil, err
		}
		args = append(args, x)
		p.accept(",")
	}
	switch name {
	case "concat":
		out := []any{}
		for _, a := range args {
			l, ok := a.([]any)
			if !ok {
				return nil, fmt.Errorf("concat of %T", a)
			}
			out = append(out, l...)
		}
		return out, nil
	case "trimsuffix", "trimprefix":
		if len(args) != 2 {
			return nil, fmt.Errorf("%s takes 2 arguments", name)
		}
		s, ok1 := args[0].(string)
		x, ok2 := args[1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%s of %T, %T", name, args[0], args[1])
		}
		if name == "trimsuffix" {
			return strings.TrimSuffix(s, x), nil
		}
		return strings.TrimPrefix(s, x), nil
	}
	return nil, fmt.Errorf("function %s() is not supported by the replay", name)
}

func tfApply(op string, l, r any) (any, error) {
	switch op {
	case "==":
		return fmt.Sprint(l) == fmt.Sprint(r), nil
	case "!=":
		return fmt.Sprint(l) != fmt.Sprint(r), nil
	case "&&", "||":
		lb, ok1 := l.(bool)
		rb, ok2 := r.(bool)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%s of %T and %T", op, l, r)
		}
		if op == "&&" {
			return lb && rb, nil
		}
		return lb || rb, nil
	}
	ln, ok1 := toNum(l)
	rn, ok2 := toNum(r)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%v %s %v: not numbers", l, op, r)
	}
	switch op {
	case "+":
		return ln + rn, nil
	case "-":
		return ln - rn, nil
	case "*":
		return ln * rn, nil
	case "/":
		if rn == 0 {
			return nil, errors.New("division by zero")
		}
		return ln / rn, nil
	case ">":
		return ln > rn, nil
	case "<":
		return ln < rn, nil
	case ">=":
		return ln >= rn, nil
	case "<=":
		return ln <= rn, nil
	}
	return nil, fmt.Errorf("operator %s", op)
}

func toNum(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

// render turns a value into template text, as Terraform does.
func render(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case int:
		return strconv.Itoa(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	return "", fmt.Errorf("cannot interpolate %T into a string", v)
}

// template evaluates a Terraform JSON string: "${expr}" alone keeps the
// expression's type; text around interpolations makes a string; "$${" is a
// literal "${".
func template(s string, scope tfScope) (any, error) {
	if strings.HasPrefix(s, "${") && closing(s, 2) == len(s)-1 {
		return evalTF(s[2:len(s)-1], scope)
	}
	var sb strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			sb.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := closing(s, i+2)
			if end < 0 {
				return nil, fmt.Errorf("unterminated interpolation in %q", s)
			}
			v, err := evalTF(s[i+2:end], scope)
			if err != nil {
				return nil, err
			}
			r, err := render(v)
			if err != nil {
				return nil, err
			}
			sb.WriteString(r)
			i = end + 1
		default:
			sb.WriteByte(s[i])
			i++
		}
	}
	return sb.String(), nil
}

// closing is the index of the "}" ending the interpolation whose
// expression starts at from, or -1.
func closing(s string, from int) int {
	depth, inStr := 0, false
	for i := from; i < len(s); i++ {
		c := s[i]
		switch {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{':
			depth++
		case c == '}':
			if depth == 0 {
				return i
			}
			depth--
		}
	}
	return -1
}

// evalDeep evaluates every string inside v (maps and lists too).
func evalDeep(v any, scope tfScope) (any, error) {
	switch x := v.(type) {
	case string:
		return template(x, scope)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := evalDeep(e, scope)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := evalDeep(e, scope)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	}
	return v, nil
}
