// Package clierr is mqtk's error vocabulary: every failure a command returns
// is classified by a Kind, and each Kind has one process exit code. Commands
// build errors with Usagef or an *Error literal; cmd/mqtk turns the returned
// error into an "mqtk:" line, "hint:" lines and an exit code with KindOf,
// HintsOf and ExitCode; `mqtk help exit-codes` prints the same table with
// WriteExitCodes, so the codes are written down once.
package clierr

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Kind classifies a failure. Each Kind maps to one exit code (see ExitCode),
// so every command exits the same way for the same cause.
type Kind int

// The kinds of failure, with the exit code each gets.
const (
	KindOther       Kind = iota // 1: anything else
	KindUsage                   // 2: bad flag, argument or input
	KindNetwork                 // 3: DNS, unreachable, TCP refused, reset
	KindTLS                     // 4: handshake or verification failed
	KindRefused                 // 5: broker refused CONNECT (CONNACK reason)
	KindRejected                // 6: broker refused a SUBSCRIBE or PUBLISH
	KindUnmet                   // 7: sub --match or a bench threshold not met
	KindTimeout                 // 27: sub -W reached (the code mosquitto_sub uses)
	KindInterrupted             // 130: Ctrl-C / SIGTERM
)

// Error is a classified failure. Op says what was being done ("connect to
// localhost:1883"), Err is the cause, Hints say what the user can do.
type Error struct {
	Kind   Kind
	Op     string
	Err    error
	Reason byte     // MQTT reason / return code, when there is one
	Hints  []string // each printed as a "hint:" line
}

func (e *Error) Error() string {
	switch {
	case e.Op == "":
		return e.Err.Error()
	case e.Err == nil:
		return e.Op
	}
	return e.Op + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Usagef returns a KindUsage error: the input was wrong, nothing was tried.
func Usagef(format string, args ...any) *Error {
	return &Error{Kind: KindUsage, Err: fmt.Errorf(format, args...)}
}

// Hintf adds a hint to e and returns e, so that the advice goes on a
// "hint:" line of its own instead of into the message:
//
//	clierr.Usagef("-q %d out of range", q).Hintf("use 0, 1 or 2")
func (e *Error) Hintf(format string, args ...any) *Error {
	e.Hints = append(e.Hints, fmt.Sprintf(format, args...))
	return e
}

// KindOf returns the Kind of err: the Kind of the first *Error in its chain,
// KindOther when there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}

// HintsOf collects the hints of every *Error in err's chain, outermost first.
func HintsOf(err error) []string {
	var hints []string
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			break
		}
		hints = append(hints, e.Hints...)
		err = e.Err
	}
	return hints
}

// exitCode is one row of the exit-code table.
type exitCode struct {
	code    int
	kind    Kind // -1 for success, which has no Kind
	meaning string
}

// exitCodes is the one table of exit codes: ExitCode maps every error
// through it and WriteExitCodes prints it. A function rather than a
// package variable, so nothing can change it.
func exitCodes() []exitCode {
	return []exitCode{
		{0, -1, "success"},
		{1, KindOther, "other runtime error"},
		{2, KindUsage, "usage error (bad flag, bad argument)"},
		{3, KindNetwork, "could not connect (network, DNS, refused TCP)"},
		{4, KindTLS, "TLS failure (handshake, verification)"},
		{5, KindRefused, "broker refused the connection (bad credentials, not authorised, other CONNACK reason)"},
		{6, KindRejected, "broker refused a subscribe or publish (SUBACK/PUBACK failure reason)"},
		{7, KindUnmet, "sub --match, bench threshold or check --expect not met"},
		{27, KindTimeout, "sub or rr -W timeout reached (the code mosquitto_sub and mosquitto_rr use)"},
		{130, KindInterrupted, "interrupted (Ctrl-C or SIGTERM)"},
	}
}

// ExitCode returns the process exit code for err: 0 for nil, else the code
// of KindOf(err).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	k := KindOf(err)
	for _, e := range exitCodes() {
		if e.kind == k {
			return e.code
		}
	}
	return 1
}

// WriteExitCodes writes the exit-code table, as `mqtk help exit-codes`
// shows it.
func WriteExitCodes(w io.Writer) error {
	var b strings.Builder
	b.WriteString("mqtk exit codes:\n\n")
	for _, e := range exitCodes() {
		fmt.Fprintf(&b, "  %3d  %s\n", e.code, e.meaning)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
