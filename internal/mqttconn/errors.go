package mqttconn

import (
	"errors"
	"fmt"

	"github.com/mqtk/mqtk/internal/packet"
)

// Kind classifies a failure. cmd/mqtk maps each Kind to one exit code, so
// every command exits the same way for the same cause.
type Kind int

// The kinds of failure, with the exit code cmd/mqtk gives each.
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

// ReasonName returns the MQTT 5 name of a reason code (0x87 "not authorized").
// 3.1.1 CONNACK return codes are mapped to their v5 equivalents by the
// 3.1.1 implementation before they get here.
func ReasonName(code byte) string {
	return packet.ReasonCode(code).String()
}
