package broker

import "testing"

// TestACLPatternExpandedOnce: %u and %c are substituted in one pass, so a
// user name or client id that itself reads "%c" or "%u" stays literal.
func TestACLPatternExpandedOnce(t *testing.T) {
	rules, err := parseACL("pattern read users/%u/#\npattern write clients/%c/#\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, client, topic string
		write, want         bool
	}{
		{"alice", "c1", "users/alice/inbox", false, true},
		{"%c", "alice", "users/alice/inbox", false, false}, // was granted: %u -> %c -> alice
		{"%c", "alice", "users/%c/inbox", false, true},
		{"bob", "%u", "clients/bob/x", true, false},
		{"bob", "%u", "clients/%u/x", true, true},
		{"+", "c", "users/alice/inbox", false, false}, // a wildcard user name never widens a rule
	} {
		if got := rules.allowed(tc.user, false, tc.client, tc.topic, tc.write); got != tc.want {
			t.Errorf("user %q client %q %s %q: allowed = %v, want %v", tc.user, tc.client,
				map[bool]string{true: "write", false: "read"}[tc.write], tc.topic, got, tc.want)
		}
	}
}
