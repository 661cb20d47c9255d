package reqresp

import "testing"

func TestTopic(t *testing.T) {
	for _, tc := range []struct{ request, suffix, want string }{
		{"svc/time", "", "svc/time/reply"},
		{"svc/time", "/answer", "svc/time/answer"},
		{"svc/time", "-r", "svc/time-r"},
	} {
		if got := Topic(tc.request, tc.suffix); got != tc.want {
			t.Errorf("Topic(%q, %q) = %q, want %q", tc.request, tc.suffix, got, tc.want)
		}
	}
}
