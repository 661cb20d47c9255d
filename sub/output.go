package sub

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/charmbracelet/lipgloss"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// Printer prints received messages exactly as `mqtk sub` does (-v, -N,
// -F, --output, the terminal view), for other commands that show the
// messages they receive (`mqtk rr`). It is for one goroutine.
type Printer struct{ p *printer }

// NewPrinter makes a Printer for o's output options (IO, Output, Verbose,
// NoEOL, Format), checked by o.ValidateOutput. Warnings (a %J payload
// that is not JSON) go to stderr.
func NewPrinter(o *Options) *Printer {
	return &Printer{p: newPrinter(o, func(s string) { o.IO.Warnf("%s", s) })}
}

// Print writes m, received at m.Received (now if zero), to the buffer.
func (p *Printer) Print(m *mqttconn.Message) {
	at := m.Received
	if at.IsZero() {
		at = time.Now()
	}
	p.p.print(m, at)
}

// Flush writes what Print buffered to stdout.
func (p *Printer) Flush() error { return p.p.flush() }

// printer turns messages into bytes on stdout. It is used from one
// goroutine only. Output is buffered and flushed by the caller whenever no
// further message is immediately pending, so that a pipe sees each message
// as it arrives while a burst costs one write, not thousands.
type printer struct {
	w       *bufio.Writer
	mode    string
	verbose bool
	noEOL   bool
	format  *Format
	env     FormatEnv
	escape  bool // stdout is a terminal: never write raw binary
	st      styles
	buf     []byte
}

func newPrinter(o *Options, warn func(string)) *printer {
	out := o.IO.Out
	p := &printer{
		w:       bufio.NewWriterSize(out.Raw(), 64<<10),
		mode:    o.Output,
		verbose: o.Verbose,
		noEOL:   o.NoEOL,
		format:  o.Format,
		escape:  out.IsTTY(),
	}
	if p.mode == OutputAuto {
		p.mode = OutputText
		if out.IsTTY() && o.Format == nil {
			p.mode = OutputStyled
		}
	}
	if p.mode == OutputStyled {
		// --output styled forces the terminal view even into a pipe (to
		// look at it with less -R, say): it is for eyes, so it escapes.
		p.escape = true
	}
	p.env = FormatEnv{Escape: p.escape, Warn: warn}
	p.st = newStyles(out.Renderer())
	return p
}

func (p *printer) eol() {
	if !p.noEOL {
		p.buf = append(p.buf, '\n')
	}
}

// print writes one message; errors surface on flush.
func (p *printer) print(m *mqttconn.Message, now time.Time) {
	b := p.buf[:0]
	switch p.mode {
	case OutputStyled:
		p.buf = b
		p.styled(m, now)
		_, _ = p.w.Write(p.buf)
		return
	case OutputJSONL, OutputJSON:
		rec := mqttconn.NewRecord(m)
		var enc []byte
		if p.mode == OutputJSON {
			enc, _ = json.MarshalIndent(rec, "", "  ")
		} else {
			enc, _ = json.Marshal(rec)
		}
		if p.escape {
			// encoding/json leaves U+0080..U+009F as they are; on a
			// terminal U+009B is CSI.
			b = appendJSONSafe(b, enc)
		} else {
			b = append(b, enc...)
		}
		b = append(b, '\n')
	case OutputRaw:
		if p.escape {
			b = append(b, escapeBinary(m.Payload)...)
		} else {
			b = append(b, m.Payload...)
		}
	case OutputHex, OutputBase64:
		if p.verbose {
			b = append(append(b, p.topic(m.Topic)...), ' ')
		}
		if p.mode == OutputHex {
			b = hexAppend(b, m.Payload, false)
		} else {
			b = base64.StdEncoding.AppendEncode(b, m.Payload)
		}
		p.buf = b
		p.eol()
		b = p.buf
	default: // text
		switch {
		case p.format != nil:
			b = p.format.Append(b, m, now, p.env)
		case len(m.Payload) == 0:
			// As mosquitto_sub prints an empty message: nothing at all,
			// or "TOPIC (null)" with -v (and with -N, nothing either), so
			// that a script reading its lines sees the same ones.
			if !p.verbose || p.noEOL {
				return
			}
			b = append(append(b, p.topic(m.Topic)...), " (null)"...)
		case p.verbose:
			b = append(append(b, p.topic(m.Topic)...), ' ')
			fallthrough
		default:
			if p.escape {
				b = append(b, escapeBinary(m.Payload)...)
			} else {
				b = append(b, m.Payload...)
			}
		}
		p.buf = b
		p.eol()
		b = p.buf
	}
	p.buf = b
	_, _ = p.w.Write(b)
}

func (p *printer) flush() error { return p.w.Flush() }

// topic returns the topic as it may be shown: on a terminal, control
// characters in it are escaped so that a topic cannot drive the terminal.
func (p *printer) topic(t string) []byte {
	if p.escape {
		return escapeBinary([]byte(t))
	}
	return []byte(t)
}

// styles for the terminal view, built from stdout's renderer so that they
// degrade to plain text when colour is off.
type styles struct {
	time, sep, badge, qos1, qos2, retain, dup, key, str, num, lit, punct lipgloss.Style
	seg                                                                  []lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	s := func() lipgloss.Style { return r.NewStyle() }
	st := styles{
		time:   s().Foreground(lipgloss.Color("8")),
		sep:    s().Foreground(lipgloss.Color("8")),
		badge:  s().Foreground(lipgloss.Color("0")).Background(lipgloss.Color("7")),
		qos1:   s().Foreground(lipgloss.Color("0")).Background(lipgloss.Color("3")),
		qos2:   s().Foreground(lipgloss.Color("0")).Background(lipgloss.Color("1")),
		retain: s().Foreground(lipgloss.Color("0")).Background(lipgloss.Color("5")),
		dup:    s().Foreground(lipgloss.Color("0")).Background(lipgloss.Color("9")),
		key:    s().Foreground(lipgloss.Color("4")),
		str:    s().Foreground(lipgloss.Color("2")),
		num:    s().Foreground(lipgloss.Color("6")),
		lit:    s().Foreground(lipgloss.Color("5")),
		punct:  s().Foreground(lipgloss.Color("8")),
	}
	for _, c := range []string{"12", "14", "10", "11", "13", "6"} {
		st.seg = append(st.seg, s().Foreground(lipgloss.Color(c)).Bold(true))
	}
	return st
}

// styled renders: time, topic coloured level by level, QoS and retain
// badges, then the payload; JSON objects and arrays are indented and
// coloured on the following lines.
func (p *printer) styled(m *mqttconn.Message, now time.Time) {
	st := &p.st
	var sb strings.Builder
	sb.WriteString(st.time.Render(now.Format("15:04:05.000")))
	sb.WriteByte(' ')
	for i, lvl := range strings.Split(string(p.topic(m.Topic)), "/") {
		if i > 0 {
			sb.WriteString(st.sep.Render("/"))
		}
		sb.WriteString(st.seg[i%len(st.seg)].Render(lvl))
	}
	switch m.QoS {
	case 1:
		sb.WriteString(" " + st.qos1.Render(" q1 "))
	case 2:
		sb.WriteString(" " + st.qos2.Render(" q2 "))
	}
	if m.Retain {
		sb.WriteString(" " + st.retain.Render(" retained "))
	}
	if m.Dup {
		sb.WriteString(" " + st.dup.Render(" dup "))
	}
	pl := bytes.TrimSpace(m.Payload)
	// json.Valid accepts invalid UTF-8 and C1 controls inside strings, and
	// json.Indent copies them: only valid UTF-8 takes the JSON path, with
	// its C1 and DEL characters written as \u escapes (an equal JSON text).
	if len(pl) > 0 && (pl[0] == '{' || pl[0] == '[') && utf8.Valid(pl) && json.Valid(pl) {
		var ind bytes.Buffer
		if json.Indent(&ind, appendJSONSafe(nil, pl), "  ", "  ") == nil {
			sb.WriteString("\n  ")
			sb.WriteString(colorJSON(ind.Bytes(), st))
			sb.WriteByte('\n')
			p.buf = append(p.buf, sb.String()...)
			return
		}
	}
	sb.WriteByte(' ')
	switch {
	case len(m.Payload) == 0:
		sb.WriteString(st.time.Render("(empty)"))
	case !utf8.Valid(m.Payload):
		// Not text: a run of hex reads better than stray runes that
		// happen to decode between escapes (de ad is valid UTF-8).
		sb.WriteString(st.lit.Render("binary, " + strconv.Itoa(len(m.Payload)) + " bytes:"))
		for _, b := range m.Payload {
			sb.WriteByte(' ')
			sb.WriteByte(lowerHex[b>>4])
			sb.WriteByte(lowerHex[b&0xf])
		}
	case !safeText(m.Payload):
		// Text with control characters: shown, with those escaped.
		sb.WriteString(st.lit.Render("escaped: "))
		sb.Write(escapeBinary(m.Payload))
	default:
		sb.Write(m.Payload)
	}
	sb.WriteByte('\n')
	p.buf = append(p.buf, sb.String()...)
}

// colorJSON colours already indented JSON token by token: keys, strings,
// numbers, literals and punctuation each get their style.
func colorJSON(b []byte, st *styles) string {
	var sb strings.Builder
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					j++
				}
				j++
			}
			j++
			if j > len(b) {
				j = len(b)
			}
			k := j
			for k < len(b) && (b[k] == ' ' || b[k] == '\n') {
				k++
			}
			if k < len(b) && b[k] == ':' {
				sb.WriteString(st.key.Render(string(b[i:j])))
			} else {
				sb.WriteString(st.str.Render(string(b[i:j])))
			}
			i = j
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for j < len(b) && strings.IndexByte("+-.eE0123456789", b[j]) >= 0 {
				j++
			}
			sb.WriteString(st.num.Render(string(b[i:j])))
			i = j
		case c == 't' || c == 'f' || c == 'n':
			j := i
			for j < len(b) && b[j] >= 'a' && b[j] <= 'z' {
				j++
			}
			sb.WriteString(st.lit.Render(string(b[i:j])))
			i = j
		case strings.IndexByte("{}[]:,", c) >= 0:
			sb.WriteString(st.punct.Render(string(c)))
			i++
		default:
			sb.WriteByte(c)
			i++
		}
	}
	return sb.String()
}

const lowerHex = "0123456789abcdef"
