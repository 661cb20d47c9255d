package broker

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/mqtk/mqtk/internal/packet"
	"github.com/muesli/termenv"
)

// tracer prints every MQTT packet read from or written to a client (the
// --trace flag), through the project's one packet printer
// (internal/packet), so the broker's trace and the clients' -d agree on
// what a packet holds. It sits on the connection's byte stream rather than
// on the engine's decoded packets, so it shows what was on the wire, also
// for packets the engine refuses. A broker without --trace has no tracer
// and pays nothing.
//
// Concurrency: every connection's goroutines call it; mu serialises the
// writes so lines never interleave.
type tracer struct {
	mu        sync.Mutex
	w         io.Writer
	jsonLines bool
	now       func() time.Time
	st        traceStyles
}

type traceStyles struct {
	time, client, in, out paint
	kinds                 [packet.KindPayload + 1]paint
}

// paint is a style reduced to the escape sequences around its text,
// worked out once. lipgloss's Style.Render measures, pads and re-parses on
// every call, which was a large part of a tracing broker's CPU under load
// (BENCHMARKS.md, "Cost of the optional hooks"); the trace only needs
// colour around single-line text.
type paint struct{ pre, post string }

func newPaint(st lipgloss.Style) paint {
	const mark = "\x00"
	pre, post, ok := strings.Cut(st.Render(mark), mark)
	if !ok {
		return paint{}
	}
	return paint{pre: pre, post: post}
}

// Render returns text between the style's sequences.
func (p paint) Render(text string) string {
	if p.pre == "" && p.post == "" {
		return text
	}
	return p.pre + text + p.post
}

// newTracer writes a line per packet to w: coloured text when color is
// true, plain text when not, JSON lines (stable field names, never coloured)
// when jsonLines is true.
func newTracer(w io.Writer, jsonLines bool, color bool) *tracer {
	// Our own renderer with the profile the caller chose: the terminal
	// guess is not consulted, and a ui.Stream's shared renderer is left alone.
	r := lipgloss.NewRenderer(w)
	if color {
		r.SetColorProfile(termenv.ANSI256)
	} else {
		r.SetColorProfile(termenv.Ascii)
	}
	st := traceStyles{
		time:   newPaint(r.NewStyle().Faint(true)),
		client: newPaint(r.NewStyle().Foreground(lipgloss.Color("6"))),
		in:     newPaint(r.NewStyle().Foreground(lipgloss.Color("2")).Bold(true)),
		out:    newPaint(r.NewStyle().Foreground(lipgloss.Color("5")).Bold(true)),
	}
	st.kinds[packet.KindType] = newPaint(r.NewStyle().Bold(true))
	st.kinds[packet.KindTopic] = newPaint(r.NewStyle().Foreground(lipgloss.Color("3")))
	st.kinds[packet.KindFlag] = newPaint(r.NewStyle().Foreground(lipgloss.Color("1")))
	st.kinds[packet.KindProps] = newPaint(r.NewStyle().Faint(true))
	return &tracer{w: w, jsonLines: jsonLines, now: time.Now, st: st}
}

func (t *tracer) style(k packet.Kind, s string) string { return t.st.kinds[k].Render(s) }

// connTrace follows one connection's two byte streams.
type connTrace struct {
	t      *tracer
	remote string

	mu      sync.Mutex // guards everything below
	client  string     // from CONNECT, or the CONNACK's assigned identifier
	version packet.Version
	in, out []byte // start of a packet not yet complete, per direction
}

func (t *tracer) conn(remote string) *connTrace {
	return &connTrace{t: t, remote: remote, version: packet.V311}
}

// read and wrote take the bytes as they crossed the connection.
func (c *connTrace) read(b []byte)  { c.feed(&c.in, b, "in") }
func (c *connTrace) wrote(b []byte) { c.feed(&c.out, b, "out") }

func (c *connTrace) feed(buf *[]byte, data []byte, dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	*buf = append(*buf, data...)
	for len(*buf) >= 2 {
		b := *buf
		rl, n, err := packet.ParseVarint(b[1:])
		if err != nil {
			if n == 0 {
				return // length not complete yet
			}
			c.print(dir, b[0], nil, err)
			*buf = nil // the stream cannot be split any further
			return
		}
		total := 1 + n + int(rl)
		if len(b) < total {
			return
		}
		c.print(dir, b[0], b[1+n:total], nil)
		*buf = append(b[:0], b[total:]...)
	}
}

// print decodes one packet and writes its line. Called with c.mu held.
func (c *connTrace) print(dir string, header byte, body []byte, err error) {
	var pk packet.Packet
	if err == nil {
		pk, err = packet.Decode(header, body, c.version)
	}
	if cn, ok := pk.(*packet.Connect); ok {
		c.version = cn.Version
		c.client = cn.ClientID
	}
	if ca, ok := pk.(*packet.Connack); ok && ca.Properties.AssignedClientID != "" {
		c.client = ca.Properties.AssignedClientID
	}
	now := c.t.now().UTC()
	var line []byte
	if c.t.jsonLines {
		line = c.jsonLine(now, dir, header, pk, body, err)
	} else {
		line = c.textLine(now, dir, header, pk, body, err)
	}
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	_, _ = c.t.w.Write(line)
}

// traceRecord is one JSON line: who and when, then the packet as
// packet.Summary describes it. Field names are part of the interface:
// scripts filter on them, so they never change meaning.
type traceRecord struct {
	Time      string `json:"time"`
	Client    string `json:"client"`
	Remote    string `json:"remote,omitempty"`
	Direction string `json:"direction"`
	packet.Summary
	Error string `json:"error,omitempty"` // a packet the codec refuses
}

func (c *connTrace) jsonLine(now time.Time, dir string, header byte, pk packet.Packet, body []byte, err error) []byte {
	rec := traceRecord{Time: now.Format(time.RFC3339Nano), Client: c.client, Remote: c.remote, Direction: dir}
	if pk != nil {
		rec.Summary = packet.Summarize(pk, c.version)
	} else {
		rec.Summary = packet.Summary{Type: packet.Type(header >> 4).String()}
	}
	if err != nil {
		rec.Error = err.Error()
		n := len(body)
		rec.PayloadSize = &n
	}
	b, jerr := json.Marshal(rec)
	if jerr != nil {
		// Only reachable if a property holds something JSON cannot
		// encode; say so rather than dropping the packet silently.
		b = fmt.Appendf(nil, `{"time":%q,"error":%q}`, rec.Time, jerr.Error())
	}
	return append(b, '\n')
}

func (c *connTrace) textLine(now time.Time, dir string, header byte, pk packet.Packet, body []byte, err error) []byte {
	st := &c.t.st
	var b strings.Builder
	b.WriteString(st.time.Render(now.Format("15:04:05.000")))
	b.WriteByte(' ')
	client := c.client
	if client == "" {
		client = "-"
	}
	b.WriteString(st.client.Render(client))
	if dir == "in" {
		b.WriteString(" " + st.in.Render("->") + " ")
	} else {
		b.WriteString(" " + st.out.Render("<-") + " ")
	}
	if pk != nil && err == nil {
		b.Write(packet.AppendText(nil, pk, c.version, c.t.style))
		if _, ok := pk.(*packet.Connect); ok && c.remote != "" {
			// The client id may be empty (server-assigned); say where it
			// came from.
			b.WriteString(" from=" + c.remote)
		}
	} else {
		b.WriteString(st.kinds[packet.KindType].Render(packet.Type(header >> 4).String()))
		fmt.Fprintf(&b, " (invalid: %v; %d bytes)", err, len(body))
	}
	b.WriteByte('\n')
	return []byte(b.String())
}
