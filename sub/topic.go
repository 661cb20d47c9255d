package sub

import (
	"fmt"
	"strings"
)

// ValidFilter checks a topic filter the way a broker will, so that a typo
// is reported before connecting rather than as a refused SUBACK.
func ValidFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty topic filter: give a topic such as sensors/# ")
	}
	inner := f
	if strings.HasPrefix(f, "$share/") {
		// [MQTT-4.8.2-1] $share/{ShareName}/{filter}, ShareName without / + #.
		rest := strings.TrimPrefix(f, "$share/")
		name, filt, ok := strings.Cut(rest, "/")
		if !ok || name == "" || filt == "" || strings.ContainsAny(name, "+#") {
			return fmt.Errorf("shared subscription %q: write it as $share/GROUP/FILTER", f)
		}
		inner = filt
	}
	levels := strings.Split(inner, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			// [MQTT-4.7.1-1] # must be a whole level and the last one.
			return fmt.Errorf("topic filter %q: # must stand alone as the last level (a/#)", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			// [MQTT-4.7.1-2] + must occupy a whole level.
			return fmt.Errorf("topic filter %q: + must stand alone as a level (a/+/c)", f)
		}
	}
	return nil
}

// FilterMatches reports whether topic matches filter, following MQTT's rules:
// + matches one level, # the rest (including the parent level), and
// wildcards at the first level do not match topics starting with $
// [MQTT-4.7.2-1]. A $share/GROUP/ prefix is ignored.
func FilterMatches(filter, topic string) bool {
	if strings.HasPrefix(filter, "$share/") {
		if _, rest, ok := strings.Cut(strings.TrimPrefix(filter, "$share/"), "/"); ok {
			filter = rest
		}
	}
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" matches "a".
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}
