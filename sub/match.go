package sub

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/itchyny/gojq"
)

// Matcher decides whether a payload counts for --match. It is compiled
// once from the expression and then used for every message.
type Matcher struct {
	expr string
	re   *regexp.Regexp
	jq   *gojq.Code
}

// CompileMatch parses a --match expression: "re:REGEX" matches the payload
// as text; "jq:EXPR" parses the payload as JSON and matches when the jq
// expression's first result is true.
func CompileMatch(expr string) (*Matcher, error) {
	kind, body, ok := strings.Cut(expr, ":")
	if !ok {
		return nil, fmt.Errorf("--match %q: start it with re: (a regular expression) or jq: (a jq expression that yields true)", expr)
	}
	m := &Matcher{expr: expr}
	switch kind {
	case "re":
		re, err := regexp.Compile(body)
		if err != nil {
			return nil, fmt.Errorf("--match %q: %w", expr, err)
		}
		m.re = re
	case "jq":
		q, err := gojq.Parse(body)
		if err != nil {
			return nil, fmt.Errorf("--match %q: jq: %w", expr, err)
		}
		code, err := gojq.Compile(q)
		if err != nil {
			return nil, fmt.Errorf("--match %q: jq: %w", expr, err)
		}
		m.jq = code
	default:
		return nil, fmt.Errorf("--match %q: unknown kind %q: use re:REGEX or jq:EXPR", expr, kind)
	}
	return m, nil
}

// String returns the expression as given.
func (m *Matcher) String() string { return m.expr }

// Match reports whether payload matches. A payload that is not JSON never
// matches a jq expression, and a jq runtime error counts as no match: a
// script waiting for `.status == "ok"` must not stop on a stray message.
func (m *Matcher) Match(payload []byte) bool {
	if m.re != nil {
		return m.re.Match(payload)
	}
	var v any
	if err := json.Unmarshal(payload, &v); err != nil {
		return false
	}
	iter := m.jq.Run(v)
	r, ok := iter.Next()
	if !ok {
		return false
	}
	b, isBool := r.(bool)
	return isBool && b
}
