// Package ui owns everything mqtk writes for people: the output streams, the
// colour decision, lipgloss styles and the "mqtk:" message conventions.
//
// Colour is decided once per stream, when Streams is built, from the stream's
// TTY state, NO_COLOR, TERM=dumb and the --color flag. Nothing else in mqtk
// decides whether to colour: packages ask the Stream.
package ui

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/charmbracelet/lipgloss"
	"github.com/mattn/go-isatty"
	"github.com/muesli/termenv"
)

// ColorMode is the user's --color choice.
type ColorMode string

// The three --color values.
const (
	ColorAuto   ColorMode = "auto"
	ColorAlways ColorMode = "always"
	ColorNever  ColorMode = "never"
)

// ParseColorMode validates a --color value.
func ParseColorMode(s string) (ColorMode, error) {
	switch ColorMode(strings.ToLower(s)) {
	case ColorAuto, "":
		return ColorAuto, nil
	case ColorAlways:
		return ColorAlways, nil
	case ColorNever:
		return ColorNever, nil
	}
	return "", fmt.Errorf("invalid --color %q: use auto, always or never", s)
}

// Stream is one output stream with its colour decision and a lipgloss
// renderer bound to it. Writes are serialised so that lines written from
// several goroutines never interleave mid-line.
type Stream struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	color    bool
	renderer *lipgloss.Renderer
	getenv   func(string) string
}

// Write implements io.Writer; it is safe for concurrent use.
func (s *Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// IsTTY reports whether the stream is a terminal.
func (s *Stream) IsTTY() bool { return s.tty }

// Color reports whether styling may be written to this stream.
func (s *Stream) Color() bool { return s.color }

// Renderer returns the lipgloss renderer for this stream; its colour profile
// is Ascii when colour is off, so styles built from it render plain text.
func (s *Stream) Renderer() *lipgloss.Renderer { return s.renderer }

// Style returns a new lipgloss style bound to this stream's renderer.
func (s *Stream) Style() lipgloss.Style { return s.renderer.NewStyle() }

// Raw returns the underlying writer, for callers that do their own buffering
// and flushing (for example a high-rate subscriber). The caller must not use
// Write and Raw concurrently.
func (s *Stream) Raw() io.Writer { return s.w }

// Streams are the three standard streams as mqtk uses them.
type Streams struct {
	In     io.Reader
	InTTY  bool
	Out    *Stream
	Err    *Stream
	Quiet  bool // suppress commentary (Info/Hint), never errors
	Getenv func(string) string
}

// NewStream builds a stream for w; tty says whether w is a terminal.
func NewStream(w io.Writer, tty bool, mode ColorMode, getenv func(string) string) *Stream {
	s := &Stream{w: w, tty: tty, renderer: lipgloss.NewRenderer(w), getenv: getenv}
	s.setMode(mode)
	return s
}

func (s *Stream) setMode(mode ColorMode) {
	s.color = decideColor(s.tty, mode, s.getenv)
	if !s.color {
		s.renderer.SetColorProfile(termenv.Ascii)
		return
	}
	p := termenv.ANSI256
	if ct := s.getenv("COLORTERM"); ct == "truecolor" || ct == "24bit" {
		p = termenv.TrueColor
	}
	s.renderer.SetColorProfile(p)
}

// SetColorMode applies the --color choice once flags are parsed. It is
// called by cmd/mqtk before any command runs, never concurrently with output.
func (s *Streams) SetColorMode(mode ColorMode) {
	s.Out.setMode(mode)
	s.Err.setMode(mode)
}

func decideColor(tty bool, mode ColorMode, getenv func(string) string) bool {
	switch mode {
	case ColorAlways:
		return true
	case ColorNever:
		return false
	}
	if getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
		return false
	}
	return tty
}

// System returns Streams for the process's stdin, stdout and stderr.
func System(mode ColorMode) *Streams {
	isTTY := func(f *os.File) bool {
		return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
	}
	s := &Streams{
		In:     os.Stdin,
		InTTY:  isTTY(os.Stdin),
		Out:    NewStream(os.Stdout, isTTY(os.Stdout), mode, os.Getenv),
		Err:    NewStream(os.Stderr, isTTY(os.Stderr), mode, os.Getenv),
		Getenv: os.Getenv,
	}
	return s
}

// Test returns Streams over buffers, with no TTY and no colour, plus the
// buffers for stdout and stderr. in may be nil.
func Test(in io.Reader) (*Streams, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	if in == nil {
		in = strings.NewReader("")
	}
	env := func(string) string { return "" }
	return &Streams{
		In:     in,
		Out:    NewStream(&out, false, ColorNever, env),
		Err:    NewStream(&errb, false, ColorNever, env),
		Getenv: env,
	}, &out, &errb
}

// Errorf prints "mqtk: <message>" on stderr, in red on a terminal.
func (s *Streams) Errorf(format string, args ...any) {
	s.line(s.Err.Style().Foreground(lipgloss.Color("9")).Bold(true), "mqtk: ", format, args...)
}

// Warnf prints "mqtk: warning: <message>" on stderr, even when quiet.
func (s *Streams) Warnf(format string, args ...any) {
	s.line(s.Err.Style().Foreground(lipgloss.Color("11")), "mqtk: warning: ", format, args...)
}

// Infof prints "mqtk: <message>" commentary on stderr unless quiet.
func (s *Streams) Infof(format string, args ...any) {
	if s.Quiet {
		return
	}
	s.line(s.Err.Style().Faint(true), "mqtk: ", format, args...)
}

// Hintf prints "hint: <message>" on stderr: what the user can do next.
func (s *Streams) Hintf(format string, args ...any) {
	s.line(s.Err.Style().Foreground(lipgloss.Color("14")), "hint: ", format, args...)
}

func (s *Streams) line(prefixStyle lipgloss.Style, prefix, format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	fmt.Fprintf(s.Err, "%s%s\n", prefixStyle.Render(prefix), msg)
}
