// Package source names where a message's payload comes from, as the
// flags of mosquitto_pub and mosquitto_rr choose it. pub and rr share the
// names; each command accepts the sources it has.
package source

// Source says where payloads come from. Exactly one is chosen.
type Source int

// The payload sources, named after their mosquitto_pub flags.
const (
	None    Source = iota
	Message        // -m: the message given
	File           // -f: the whole of a file, binary-safe
	Stdin          // -s: all of stdin as one message
	Lines          // -l: one message per line of stdin (pub)
	Null           // -n: an empty payload
	Replay         // --replay: the records in a file (pub)
)

// String names the flag that chooses s.
func (s Source) String() string {
	switch s {
	case Message:
		return "-m/--message"
	case File:
		return "-f/--file"
	case Stdin:
		return "-s/--stdin-file"
	case Lines:
		return "-l/--stdin-line"
	case Null:
		return "-n/--null-message"
	case Replay:
		return "--replay"
	}
	return "no payload source"
}
