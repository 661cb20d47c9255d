package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/charmbracelet/lipgloss"

	"github.com/mqtk/mqtk/internal/ui"
)

// render prints the reports on stdout: one table, two side by side, or
// JSON (one object, or an array of two with --compare).
func render(o *Options, reports []*Report) error {
	out := o.IO.Out
	if o.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		var v any = reports[0]
		if len(reports) > 1 {
			v = reports
		}
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("write the report: %w", err)
		}
		return nil
	}
	if len(reports) == 1 {
		return WriteTable(out, reports[0], newStyler(out))
	}
	return WriteCompare(out, reports[0], reports[1], newStyler(out))
}

// styler colours verdicts when the stream has colour on.
type styler func(verdict string) string

func newStyler(s *ui.Stream) styler {
	if s == nil || !s.Color() {
		return nil
	}
	yes := s.Style().Foreground(lipgloss.Color("2"))
	no := s.Style().Foreground(lipgloss.Color("1"))
	dim := s.Style().Faint(true)
	return func(v string) string {
		switch strings.TrimSpace(v) {
		case Yes:
			return yes.Render(v)
		case No, Failed:
			return no.Render(v)
		case NA, Skipped:
			return dim.Render(v)
		}
		return v
	}
}

func (st styler) apply(v string) string {
	if st == nil {
		return v
	}
	return st(v)
}

// cell is a row's verdict as the table shows it: a value row shows no
// "info".
func cell(r *Row) string {
	if r.Verdict == Info {
		return ""
	}
	return r.Verdict
}

func text(r *Row) string {
	s := r.Value
	if r.Note != "" {
		if s != "" {
			s += "; "
		}
		s += r.Note
	}
	return s
}

// WriteTable prints one report as a table grouped by kind of check. st
// may be nil for plain text.
func WriteTable(w io.Writer, r *Report, st styler) error {
	nameW := 0
	for _, row := range r.Rows {
		nameW = max(nameW, len([]rune(row.Name)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (behaviour probed with MQTT %s)\n", r.Broker, r.Version)
	group := ""
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Group != group {
			group = row.Group
			fmt.Fprintf(&b, "\n%s\n", group)
		}
		v := fmt.Sprintf("%-7s", cell(row))
		line := fmt.Sprintf("  %s  %s  %s", pad(row.Name, nameW), st.apply(v), text(row))
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteCompare prints two reports side by side, row by row.
func WriteCompare(w io.Writer, a, c *Report, st styler) error {
	ids := []string{}
	seen := map[string]bool{}
	for _, r := range []*Report{a, c} {
		for _, row := range r.Rows {
			if !seen[row.ID] {
				seen[row.ID] = true
				ids = append(ids, row.ID)
			}
		}
	}
	nameW, aW := 0, len(a.Broker)
	for _, id := range ids {
		for _, r := range []*Report{a, c} {
			if row := r.Row(id); row != nil {
				nameW = max(nameW, len([]rune(row.Name)))
			}
		}
		if row := a.Row(id); row != nil {
			aW = max(aW, len([]rune(short(row))))
		}
	}
	aW = min(aW, 60)
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  %s\n", pad("", nameW+2), pad(a.Broker, aW), c.Broker)
	group := ""
	for _, id := range ids {
		ra, rc := a.Row(id), c.Row(id)
		ref := ra
		if ref == nil {
			ref = rc
		}
		if ref.Group != group {
			group = ref.Group
			fmt.Fprintf(&b, "\n%s\n", group)
		}
		sa, sc := "-", "-"
		if ra != nil {
			sa = short(ra)
		}
		if rc != nil {
			sc = short(rc)
		}
		mark := " "
		if sa != sc {
			mark = "≠"
		}
		line := fmt.Sprintf("%s %s  %s  %s", mark, pad(ref.Name, nameW), pad(st.apply(sa), aW+len(st.apply(sa))-len(sa)), st.apply(sc))
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// short is a row in one column: the verdict and the value, cut to fit.
func short(r *Row) string {
	s := strings.TrimSpace(cell(r) + " " + r.Value)
	if r.Value == "" && r.Note != "" {
		s = strings.TrimSpace(cell(r) + " (" + r.Note + ")")
	}
	if rs := []rune(s); len(rs) > 60 {
		s = string(rs[:59]) + "…"
	}
	return s
}

func pad(s string, n int) string {
	if k := len([]rune(s)); k < n {
		return s + strings.Repeat(" ", n-k)
	}
	return s
}
