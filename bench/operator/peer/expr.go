package main

// The subset of Airlock's label-expression language (core/src/expr) the benchmark's groups use:
//
//	key = value, key == value, key != value, key in (v1, v2), key notin (v1, v2), has(key),
//	not / !, and / &&, or / ||, parentheses
//
// with the same meaning (`!=` and `notin` match pods without the label; `not` binds tightest, then
// `and`, then `or`). Left out, because the benchmark does not need them: the length, depth and term
// limits, quoting keywords as keys, and precise error positions.

import (
	"fmt"
	"strings"
	"unicode"
)

type expr interface {
	matches(labels map[string]string) bool
}

type and struct{ left, right expr }
type or struct{ left, right expr }
type not struct{ inner expr }
type eq struct {
	key, value string
	negate     bool
}
type in struct {
	key    string
	values []string
	negate bool
}
type has struct{ key string }

func (e and) matches(l map[string]string) bool { return e.left.matches(l) && e.right.matches(l) }
func (e or) matches(l map[string]string) bool  { return e.left.matches(l) || e.right.matches(l) }
func (e not) matches(l map[string]string) bool { return !e.inner.matches(l) }
func (e has) matches(l map[string]string) bool { _, ok := l[e.key]; return ok }

func (e eq) matches(l map[string]string) bool {
	v, ok := l[e.key]
	return (ok && v == e.value) != e.negate
}

func (e in) matches(l map[string]string) bool {
	v, ok := l[e.key]
	found := false
	if ok {
		for _, want := range e.values {
			if v == want {
				found = true
				break
			}
		}
	}
	return found != e.negate
}

type parser struct {
	tokens []string
	pos    int
}

// parse reads an expression of the subset above.
func parse(input string) (expr, error) {
	tokens, err := lex(input)
	if err != nil {
		return nil, err
	}
	p := &parser{tokens: tokens}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.tokens) {
		return nil, fmt.Errorf("unexpected %q", p.tokens[p.pos])
	}
	return e, nil
}

func lex(input string) ([]string, error) {
	var tokens []string
	isWord := func(r rune) bool {
		return unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_./", r)
	}
	rs := []rune(input)
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case strings.HasPrefix(string(rs[i:]), "==") || strings.HasPrefix(string(rs[i:]), "!=") ||
			strings.HasPrefix(string(rs[i:]), "&&") || strings.HasPrefix(string(rs[i:]), "||"):
			tokens = append(tokens, string(rs[i:i+2]))
			i += 2
		case strings.ContainsRune("=!(),", r):
			tokens = append(tokens, string(r))
			i++
		case r == '"' || r == '\'':
			end := i + 1
			for end < len(rs) && rs[end] != r {
				end++
			}
			if end == len(rs) {
				return nil, fmt.Errorf("unterminated quote")
			}
			// A leading quote marks the token as a literal, never a keyword.
			tokens = append(tokens, "\x00"+string(rs[i+1:end]))
			i = end + 1
		case isWord(r):
			end := i
			for end < len(rs) && isWord(rs[end]) {
				end++
			}
			tokens = append(tokens, string(rs[i:end]))
			i = end
		default:
			return nil, fmt.Errorf("unexpected character %q", r)
		}
	}
	return tokens, nil
}

func (p *parser) peek() string {
	if p.pos < len(p.tokens) {
		return p.tokens[p.pos]
	}
	return ""
}

func (p *parser) next() string {
	t := p.peek()
	p.pos++
	return t
}

func (p *parser) expect(want string) error {
	if got := p.next(); got != want {
		return fmt.Errorf("expected %q, found %q", want, got)
	}
	return nil
}

func (p *parser) or() (expr, error) {
	left, err := p.and()
	for err == nil && (p.peek() == "or" || p.peek() == "||") {
		p.pos++
		var right expr
		if right, err = p.and(); err == nil {
			left = or{left, right}
		}
	}
	return left, err
}

func (p *parser) and() (expr, error) {
	left, err := p.unary()
	for err == nil && (p.peek() == "and" || p.peek() == "&&") {
		p.pos++
		var right expr
		if right, err = p.unary(); err == nil {
			left = and{left, right}
		}
	}
	return left, err
}

func (p *parser) unary() (expr, error) {
	if t := p.peek(); t == "not" || t == "!" {
		p.pos++
		inner, err := p.unary()
		return not{inner}, err
	}
	return p.term()
}

func (p *parser) term() (expr, error) {
	if p.peek() == "(" {
		p.pos++
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		return e, p.expect(")")
	}
	if p.peek() == "has" && p.pos+1 < len(p.tokens) && p.tokens[p.pos+1] == "(" {
		p.pos += 2
		key, err := p.word()
		if err != nil {
			return nil, err
		}
		return has{key}, p.expect(")")
	}
	key, err := p.word()
	if err != nil {
		return nil, err
	}
	switch op := p.next(); op {
	case "=", "==", "!=":
		value, err := p.word()
		return eq{key: key, value: value, negate: op == "!="}, err
	case "in", "notin":
		if err := p.expect("("); err != nil {
			return nil, err
		}
		var values []string
		for {
			value, err := p.word()
			if err != nil {
				return nil, err
			}
			values = append(values, value)
			switch sep := p.next(); sep {
			case ",":
				continue
			case ")":
				return in{key: key, values: values, negate: op == "notin"}, nil
			default:
				return nil, fmt.Errorf("expected ',' or ')', found %q", sep)
			}
		}
	default:
		return nil, fmt.Errorf("expected an operator after %q, found %q", key, op)
	}
}

// word reads a key or value: a bare word or a quoted literal.
func (p *parser) word() (string, error) {
	t := p.next()
	if t == "" || strings.ContainsAny(t[:1], "=!(),&|") {
		return "", fmt.Errorf("expected a label key or value, found %q", t)
	}
	return strings.TrimPrefix(t, "\x00"), nil
}
