package sub

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// statsTable counts messages per topic for --stats and --watch.
type statsTable struct {
	start  time.Time
	topics map[string]*topicStats
	drawn  int // lines drawn by the last --watch frame, to redraw in place
}

type topicStats struct {
	topic   string
	count   int
	bytes   int
	first   time.Time
	last    time.Time
	retain  bool
	payload []byte
	recent  [rateSlots]rateSlot // arrivals per second, for the live rate
}

// The live rate counts arrivals per whole second in a small ring, so that
// it costs the same at any message rate (a list of arrival times would
// have to be capped, and a cap saturates the rate).
const (
	rateWindow = 5 // seconds the live rate looks back
	rateSlots  = rateWindow + 1
)

type rateSlot struct {
	sec int64 // Unix second this slot counts
	n   int
}

func newStatsTable() *statsTable {
	return &statsTable{start: time.Now(), topics: map[string]*topicStats{}}
}

func (s *statsTable) add(m *mqttconn.Message) {
	ts := s.topics[m.Topic]
	if ts == nil {
		ts = &topicStats{topic: m.Topic, first: m.Received}
		s.topics[m.Topic] = ts
	}
	ts.count++
	ts.bytes += len(m.Payload)
	ts.last = m.Received
	ts.retain = m.Retain
	ts.payload = append(ts.payload[:0], m.Payload[:min(len(m.Payload), 200)]...)
	ts.arrived(m.Received)
}

func (ts *topicStats) arrived(t time.Time) {
	sec := t.Unix()
	slot := &ts.recent[((sec%rateSlots)+rateSlots)%rateSlots]
	switch {
	case slot.sec == sec:
		slot.n++
	case slot.sec < sec:
		*slot = rateSlot{sec: sec, n: 1}
	}
	// An arrival stamped more than rateSlots seconds before the slot's
	// second is too old for the window: not counted.
}

// rate is messages per second over the last rateWindow seconds: the
// current, partial second and the whole ones before it, divided by the
// time they cover (shorter for a topic that started inside the window).
func (ts *topicStats) rate(now time.Time) float64 {
	nowSec := now.Unix()
	from := time.Unix(nowSec-(rateWindow-1), 0)
	if ts.first.After(from) {
		from = ts.first
	}
	n := 0
	for _, slot := range ts.recent {
		if slot.sec > nowSec-rateWindow && slot.sec <= nowSec {
			n += slot.n
		}
	}
	// At least a second, so that one message just in is not a huge rate.
	return float64(n) / max(now.Sub(from).Seconds(), 1)
}

func (s *statsTable) sorted(byCount bool) []*topicStats {
	rows := make([]*topicStats, 0, len(s.topics))
	for _, ts := range s.topics {
		rows = append(rows, ts)
	}
	sort.Slice(rows, func(i, j int) bool {
		if byCount && rows[i].count != rows[j].count {
			return rows[i].count > rows[j].count
		}
		return rows[i].topic < rows[j].topic
	})
	return rows
}

// render writes the --stats report (live=false) or one --watch frame
// (live=true, redrawn over the previous one with ANSI cursor movement).
func (s *statsTable) render(w io.Writer, now time.Time, st *styles, live bool) {
	var b bytes.Buffer
	if !live {
		elapsed := now.Sub(s.start)
		total := 0
		for _, ts := range s.topics {
			total += ts.count
		}
		fmt.Fprintf(&b, "%-40s %10s %10s %12s\n", "TOPIC", "MESSAGES", "MSG/S", "BYTES")
		for _, ts := range s.sorted(true) {
			fmt.Fprintf(&b, "%-40s %10d %10.1f %12d\n", ts.topic, ts.count, float64(ts.count)/max(elapsed.Seconds(), 1e-9), ts.bytes)
		}
		fmt.Fprintf(&b, "%d messages on %d topics in %s\n", total, len(s.topics), elapsed.Round(time.Millisecond))
		_, _ = w.Write(b.Bytes())
		return
	}
	if s.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", s.drawn)
	}
	const maxRows = 40
	rows := s.sorted(false)
	lines := 0
	line := func(text string) {
		b.WriteString("\x1b[2K")
		b.WriteString(text)
		b.WriteByte('\n')
		lines++
	}
	line(st.time.Render(fmt.Sprintf("%-40s %8s %8s %6s  %s", "TOPIC", "COUNT", "MSG/S", "AGE", "LAST PAYLOAD")))
	for i, ts := range rows {
		if i == maxRows {
			line(fmt.Sprintf("... and %d more topics", len(rows)-maxRows))
			break
		}
		pl := string(escapeBinary(ts.payload))
		pl = strings.ReplaceAll(pl, "\n", " ")
		if len(pl) > 60 {
			pl = pl[:60] + "…"
		}
		topic := ts.topic
		if len(topic) > 40 {
			topic = "…" + topic[len(topic)-39:]
		}
		flag := " "
		if ts.retain {
			flag = st.retain.Render("R")
		}
		line(fmt.Sprintf("%s %8d %8.1f %6s %s %s", st.seg[0].Render(fmt.Sprintf("%-40s", topic)), ts.count, ts.rate(now),
			now.Sub(ts.last).Truncate(time.Second), flag, pl))
	}
	for lines < s.drawn {
		line("")
	}
	s.drawn = lines
	_, _ = w.Write(b.Bytes())
}
