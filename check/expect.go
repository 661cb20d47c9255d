package check

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ui"
)

// expectations map a row id to what the row must say:
//
//	yes, no, true, false, n/a   the verdict
//	2, ">= 1024", "< 100"       the row's number (limits, sizes, ms)
//	any other text              the row's value, exactly
type expectations map[string]string

func loadExpectations(path string) (expectations, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "read --expect", Err: err}
	}
	var raw map[string]any
	// YAML reads JSON too.
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "read --expect " + path, Err: err,
			Hints: []string{"the file maps row ids to values, one per line: 'protocol.5: yes', 'connack.maximum_qos: 2', 'max_payload: \">= 65536\"'; 'mqtk check -F json' lists the ids"}}
	}
	exp := expectations{}
	for k, v := range raw {
		switch v := v.(type) {
		case bool:
			exp[k] = map[bool]string{true: Yes, false: No}[v]
		case int, int64, float64, string:
			exp[k] = fmt.Sprint(v)
		default:
			return nil, clierr.Usagef("--expect %s: %s is a %T, not a value", path, k, v).Hintf("give a value: yes, no, a number, \">= N\", or text")
		}
	}
	return exp, nil
}

var comparison = regexp.MustCompile(`^(>=|<=|==|=|>|<)?\s*(-?[0-9]+(?:\.[0-9]+)?)$`)

// meets reports whether row satisfies want, and what it has instead.
func meets(row *Row, want string) (bool, string) {
	if row == nil {
		return false, "no such row"
	}
	got := row.Verdict
	if row.Value != "" {
		got += ": " + row.Value
	}
	switch strings.ToLower(want) {
	case Yes, No, NA, Info, Skipped, Failed:
		return row.Verdict == strings.ToLower(want), got
	}
	if m := comparison.FindStringSubmatch(strings.TrimSpace(want)); m != nil {
		if row.Number == nil {
			return false, got
		}
		w, _ := strconv.ParseFloat(m[2], 64)
		n := *row.Number
		switch m[1] {
		case ">=":
			return n >= w, got
		case "<=":
			return n <= w, got
		case ">":
			return n > w, got
		case "<":
			return n < w, got
		}
		return n == w, got
	}
	return row.Value == want, got
}

// check applies the expectations to every report; each unmet one is
// reported on stderr, and the result is a KindUnmet error when any is.
func (e expectations) check(io *ui.Streams, reports []*Report) error {
	ids := make([]string, 0, len(e))
	for id := range e {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	unmet := 0
	for _, r := range reports {
		for _, id := range ids {
			if ok, got := meets(r.Row(id), e[id]); !ok {
				unmet++
				io.Errorf("%s: %s: want %s, got %s", r.Broker, id, e[id], got)
			}
		}
	}
	if unmet > 0 {
		return &clierr.Error{Kind: clierr.KindUnmet, Err: fmt.Errorf("%d of %d expectations not met", unmet, len(ids)*len(reports))}
	}
	return nil
}
