// Package topic holds MQTT's rules for topic names and topic filters:
// validation, matching a name against a filter, whether one filter covers
// another (for ACLs), and the subscription tree a broker routes with.
//
// One implementation serves the codec, the broker and the clients, so a
// filter mqtk sub accepts is one mqtk broker accepts, and a topic mqtk pub
// refuses is one the broker would refuse with the same words.
package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest topic name or filter in bytes: an MQTT UTF-8
// string carries a two-byte length prefix [MQTT-1.5.4].
const MaxLen = 65535

// Kinds of invalid topic, for errors.Is: the codec maps them to the reason
// codes 0x90 (Topic Name invalid) and 0x8F (Topic Filter invalid).
var (
	ErrInvalidName   = errors.New("invalid topic name")
	ErrInvalidFilter = errors.New("invalid topic filter")
)

// sharePrefix starts a shared subscription's filter [MQTT-4.8.2-1].
const sharePrefix = "$share/"

// Error says why a topic name or filter is invalid. Its message names the
// topic and the cause and is meant to be shown to users as it is.
type Error struct {
	Kind   error  // ErrInvalidName or ErrInvalidFilter
	Topic  string // the name or filter as given
	Reason string // what is wrong and how to write it instead
}

func (e *Error) Error() string {
	what := "topic name"
	if e.Kind == ErrInvalidFilter {
		what = "topic filter"
	}
	if e.Topic == "" {
		return what + " is empty: " + e.Reason
	}
	return what + " " + quote(e.Topic) + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalidName) and errors.Is(err,
// ErrInvalidFilter) work.
func (e *Error) Unwrap() error { return e.Kind }

// quote shows at most 60 bytes of t: a 64 KiB topic would bury the reason.
func quote(t string) string {
	if len(t) > 60 {
		return fmt.Sprintf("%q...", t[:60])
	}
	return fmt.Sprintf("%q", t)
}

func nameError(name, reason string) error {
	return &Error{Kind: ErrInvalidName, Topic: name, Reason: reason}
}

func filterError(filter, reason string) error {
	return &Error{Kind: ErrInvalidFilter, Topic: filter, Reason: reason}
}

// ValidateName checks a topic name a client publishes to. It does not
// allocate unless the name is invalid: the broker runs it on every PUBLISH.
func ValidateName(name string) error {
	if name == "" {
		// [MQTT-4.7.3-1] at least one character long.
		return nameError(name, "give one such as sensors/1/temp")
	}
	if len(name) > MaxLen {
		return nameError(name, tooLong(len(name)))
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '+' || c == '#':
			// [MQTT-3.3.2-2] [MQTT-4.7.1-1] wildcards are for filters only.
			return nameError(name, "wildcards + and # are only for subscribing: publish to a concrete topic")
		case c == 0:
			// [MQTT-1.5.4-2] [MQTT-4.7.3-2] no U+0000.
			return nameError(name, nulReason)
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(name[i:])
			if r == utf8.RuneError && size == 1 {
				// [MQTT-1.5.4-1] well-formed UTF-8 (no surrogates either).
				return nameError(name, badUTF8(i))
			}
			i += size - 1
		}
	}
	return nil
}

// ValidateFilter checks a subscription's topic filter, including the
// $share/GROUP/FILTER form. It does not allocate unless the filter is
// invalid.
func ValidateFilter(filter string) error {
	if filter == "" {
		// [MQTT-4.7.3-1] at least one character long.
		return filterError(filter, "give one such as sensors/#")
	}
	if len(filter) > MaxLen {
		return filterError(filter, tooLong(len(filter)))
	}
	if i, nul := badEncoding(filter); i >= 0 {
		if nul {
			// [MQTT-1.5.4-2] no U+0000.
			return filterError(filter, nulReason)
		}
		// [MQTT-1.5.4-1] well-formed UTF-8.
		return filterError(filter, badUTF8(i))
	}
	inner := filter
	if rest, ok := strings.CutPrefix(filter, sharePrefix); ok {
		group, in, slash := strings.Cut(rest, "/")
		switch {
		case group == "":
			// [MQTT-4.8.2-1] a ShareName at least one character long.
			return filterError(filter, "the share group is empty: write $share/GROUP/FILTER")
		case strings.ContainsAny(group, "+#"):
			// [MQTT-4.8.2-2] a ShareName holds no / + or #.
			return filterError(filter, fmt.Sprintf("share group %q holds a wildcard: write $share/GROUP/FILTER with a plain GROUP", group))
		case !slash:
			// [MQTT-4.8.2-2] the ShareName is followed by / and a filter.
			return filterError(filter, "no filter after the share group: write $share/GROUP/FILTER")
		case in == "":
			// [MQTT-4.8.2-2] [MQTT-4.7.3-1] that filter is not empty.
			return filterError(filter, "the filter after the share group is empty: write $share/GROUP/FILTER")
		}
		inner = in
	}
	start := 0 // of the current level in inner
	for i := 0; i < len(inner); i++ {
		switch inner[i] {
		case '/':
			start = i + 1
		case '+':
			// [MQTT-4.7.1-3] + occupies a whole level.
			if i != start || (i+1 < len(inner) && inner[i+1] != '/') {
				return filterError(filter, "+ must stand alone in its level (a/+/c, not a/b+)")
			}
		case '#':
			// [MQTT-4.7.1-2] # occupies a whole level and is the last one.
			if i != start || (i+1 < len(inner) && inner[i+1] != '/') {
				return filterError(filter, "# must stand alone in its level (a/#, not a#)")
			}
			if i+1 < len(inner) {
				return filterError(filter, "# must be the last level (a/#)")
			}
		}
	}
	return nil
}

const nulReason = "contains U+0000 (NUL), which MQTT forbids: remove it"

func tooLong(n int) string {
	return fmt.Sprintf("%d bytes, over MQTT's limit of %d: shorten it", n, MaxLen)
}

func badUTF8(at int) string {
	return fmt.Sprintf("not valid UTF-8 (at byte %d): fix its encoding", at)
}

// badEncoding returns the offset of the first NUL or ill-formed UTF-8
// sequence in s, and whether it is a NUL; -1 if there is none.
func badEncoding(s string) (int, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0:
			return i, true
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return i, false
			}
			i += size - 1
		}
	}
	return -1, false
}

// ParseShared splits a shared subscription's filter: "$share/g/a/b" gives
// ("g", "a/b", true). A filter without the $share/ prefix gives ("",
// filter, false). It does not validate: "$share/g" gives ("g", "", true),
// which ValidateFilter refuses.
func ParseShared(filter string) (group, inner string, shared bool) {
	rest, ok := strings.CutPrefix(filter, sharePrefix)
	if !ok {
		return "", filter, false
	}
	group, inner, _ = strings.Cut(rest, "/")
	return group, inner, true
}

// Match reports whether the topic name matches filter: + matches exactly
// one level, # the rest including the parent level ("a/#" matches "a"), and
// a filter starting with a wildcard does not match a name starting with $
// [MQTT-4.7.2-1]. A $share/GROUP/ prefix is ignored: which member gets a
// message is the router's business, not the filter's. Both are assumed
// valid; Match does not allocate.
func Match(filter, name string) bool {
	if _, inner, shared := ParseShared(filter); shared {
		filter = inner
	}
	if dollarGuard(filter, name) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		nl, nrest, nmore := strings.Cut(name, "/")
		if fl != "+" && fl != nl {
			return false
		}
		switch {
		case !fmore && !nmore:
			return true
		case !nmore:
			// [MQTT-4.7.1-2] "a/#" matches "a" too.
			return frest == "#"
		case !fmore:
			return false
		}
		filter, name = frest, nrest
	}
}

// dollarGuard reports whether filter starts with a wildcard and name (a
// topic name, or a filter for Covers) with $: such a filter never matches
// such a name, so "#" does not deliver $SYS [MQTT-4.7.2-1].
func dollarGuard(filter, name string) bool {
	return name != "" && name[0] == '$' && filter != "" && (filter[0] == '+' || filter[0] == '#')
}

// Covers reports whether filter outer matches every topic name that
// filter inner matches; inner may also be a plain topic name, and then
// Covers is Match. An ACL rule for "a/+" thus permits subscribing to "a/b"
// and "a/+" but not "a/#", and no wildcard-first rule permits anything
// starting with $ [MQTT-4.7.2-1]. A $share/ prefix is not stripped from
// either: an ACL names shared subscriptions as they are written.
//
// It compares level by level without splitting, so it does not allocate:
// the broker runs it for every ACL rule on every publish and delivery.
func Covers(outer, inner string) bool {
	if dollarGuard(outer, inner) {
		return false
	}
	innerDone := false // every level of inner has been compared
	for {
		ol, oRest, oMore := strings.Cut(outer, "/")
		if ol == "#" {
			return true
		}
		if innerDone {
			return false
		}
		il, iRest, iMore := strings.Cut(inner, "/")
		switch {
		case ol == "+":
			if il == "#" {
				return false // + is one level, # any number
			}
		case il == "+" || il == "#":
			return false // a literal level cannot cover a wildcard
		case ol != il:
			return false
		}
		if !oMore {
			return !iMore
		}
		outer, inner, innerDone = oRest, iRest, !iMore
	}
}
