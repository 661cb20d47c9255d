package broker

import (
	"fmt"
	"strings"
)

// mosquitto's acl_file syntax:
//
//	# comment
//	topic [read|write|readwrite|deny] <filter>   (no access word = readwrite)
//	user <name>                                  (following topic lines are theirs)
//	pattern [read|write|readwrite|deny] <filter> (every client; %u user, %c client id)
//
// topic lines before the first user line apply to anonymous clients. A
// matching deny wins; otherwise access needs a matching allow; with an ACL
// file, anything not allowed is denied.

type aclAccess int

const (
	aclRead aclAccess = 1 << iota
	aclWrite
	aclDeny
)

type aclRule struct {
	access aclAccess
	filter string
}

type aclRules struct {
	anonymous []aclRule
	users     map[string][]aclRule
	patterns  []aclRule
}

func parseACL(text string) (*aclRules, error) {
	r := &aclRules{users: map[string][]aclRule{}}
	var current *string // nil: anonymous section
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimRight(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		keyword, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch keyword {
		case "user":
			if rest == "" {
				return nil, fmt.Errorf("line %d: 'user' needs a name", n+1)
			}
			name := rest
			current = &name
		case "topic", "pattern":
			access := aclRead | aclWrite
			word, filter, hasFilter := strings.Cut(rest, " ")
			switch word {
			case "read":
				access = aclRead
			case "write":
				access = aclWrite
			case "readwrite":
			case "deny":
				access = aclDeny
			default:
				filter, hasFilter = rest, true
			}
			filter = strings.TrimSpace(filter)
			if !hasFilter || filter == "" {
				return nil, fmt.Errorf("line %d: %q needs a topic filter, as in '%s read sensors/#'", n+1, line, keyword)
			}
			if !IsValidACLFilter(filter) {
				return nil, fmt.Errorf("line %d: %q is not a valid topic filter (# must be last, + and # alone in their level)", n+1, filter)
			}
			rule := aclRule{access: access, filter: filter}
			switch {
			case keyword == "pattern":
				r.patterns = append(r.patterns, rule)
			case current == nil:
				r.anonymous = append(r.anonymous, rule)
			default:
				r.users[*current] = append(r.users[*current], rule)
			}
		default:
			return nil, fmt.Errorf("line %d: unknown keyword %q (want topic, user or pattern)", n+1, keyword)
		}
	}
	return r, nil
}

// IsValidACLFilter reports whether f is a well-formed topic filter.
func IsValidACLFilter(f string) bool {
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

// allowed decides access to topic, which is a topic name (publish,
// delivery) or a subscription filter.
func (r *aclRules) allowed(user string, anonymous bool, clientID, topic string, write bool) bool {
	want := aclRead
	if write {
		want = aclWrite
	}
	rules := r.anonymous
	if !anonymous {
		rules = r.users[user]
	}
	grant := false
	check := func(rule aclRule, filter string) bool {
		if !aclCovers(filter, topic) {
			return true
		}
		if rule.access&aclDeny != 0 {
			return false
		}
		if rule.access&want != 0 {
			grant = true
		}
		return true
	}
	for _, rule := range rules {
		if !check(rule, rule.filter) {
			return false
		}
	}
	for _, rule := range r.patterns {
		if anonymous && strings.Contains(rule.filter, "%u") {
			continue // %u cannot stand for a user who has none
		}
		f := expandPattern(rule.filter, user, clientID)
		if f == "" {
			continue
		}
		if !check(rule, f) {
			return false
		}
	}
	return grant
}

// expandPattern substitutes %u and %c. A value holding a wildcard or '/'
// would widen the rule (user "+" reading everyone's topics), so such a
// pattern does not apply, as in mosquitto.
func expandPattern(filter, user, clientID string) string {
	if strings.Contains(filter, "%u") && strings.ContainsAny(user, "+#/") {
		return ""
	}
	if strings.Contains(filter, "%c") && strings.ContainsAny(clientID, "+#/") {
		return ""
	}
	return strings.ReplaceAll(strings.ReplaceAll(filter, "%u", user), "%c", clientID)
}

// aclCovers reports whether every topic that sub (a topic name or a
// filter) can match is matched by the ACL filter acl. For a topic name that
// is plain MQTT matching; for a subscription it means a rule for "a/+" grants
// "a/b" and "a/+" but not "a/#".
func aclCovers(acl, sub string) bool {
	// [MQTT-4.7.2-1] filters starting with a wildcard do not match $ topics.
	if strings.HasPrefix(sub, "$") && (strings.HasPrefix(acl, "+") || strings.HasPrefix(acl, "#")) {
		return false
	}
	// Level by level without splitting: this runs for every rule on every
	// publish and delivery, and strings.Split allocated twice per rule.
	subDone := false // every level of sub has been compared
	for {
		al, aRest, aMore := strings.Cut(acl, "/")
		if al == "#" {
			return true
		}
		if subDone {
			return false
		}
		sl, sRest, sMore := strings.Cut(sub, "/")
		switch {
		case al == "+":
			if sl == "#" {
				return false
			}
		case sl == "+" || sl == "#":
			return false
		case al != sl:
			return false
		}
		if !aMore {
			return !sMore
		}
		acl, sub, subDone = aRest, sRest, !sMore
	}
}
