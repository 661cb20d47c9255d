package broker

import (
	"fmt"
	"strings"

	"github.com/mqtk/mqtk/internal/topic"
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
			// %u and %c are plain characters to topic, so a pattern is
			// checked as written; expandPattern keeps its expansion valid.
			if err := topic.ValidateFilter(filter); err != nil {
				return nil, fmt.Errorf("line %d: %w", n+1, err)
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

// allowed decides access to name, which is a topic name (publish,
// delivery) or a subscription filter.
func (r *aclRules) allowed(user string, anonymous bool, clientID, name string, write bool) bool {
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
		if !topic.Covers(filter, name) {
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
	// One pass: a user named "%c" must not have the client id substituted
	// into what was already substituted (user "%c" with client id "alice"
	// reading users/alice/#).
	return strings.NewReplacer("%u", user, "%c", clientID).Replace(filter)
}
