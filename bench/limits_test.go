package bench

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

// fakeLimit is an RLIMIT_NOFILE that records what ensureFiles sets.
type fakeLimit struct {
	soft, hard uint64
	getErr     error
	setErr     error
	set        []uint64
}

func (f *fakeLimit) limiter() *fileLimiter {
	return &fileLimiter{
		get: func() (uint64, uint64, error) { return f.soft, f.hard, f.getErr },
		set: func(soft, hard uint64) error {
			f.set = append(f.set, soft)
			if hard != f.hard {
				return errors.New("hard limit changed")
			}
			if f.setErr == nil {
				f.soft = soft
			}
			return f.setErr
		},
	}
}

func TestEnsureFiles(t *testing.T) {
	for _, c := range []struct {
		name                 string
		lim                  fakeLimit
		need                 int
		wantSet              []uint64
		wantErr, wantWarning bool
	}{
		{"enough already", fakeLimit{soft: 1024, hard: 4096}, 1000, nil, false, false},
		{"raised to the need", fakeLimit{soft: 1024, hard: 4096}, 3000, []uint64{3000}, false, false},
		{"up to the hard limit exactly", fakeLimit{soft: 1024, hard: 4096}, 4096, []uint64{4096}, false, false},
		{"above the hard limit", fakeLimit{soft: 1024, hard: 4096}, 5000, nil, true, false},
		{"raise refused", fakeLimit{soft: 1024, hard: 4096, setErr: errors.New("EPERM")}, 3000, []uint64{3000}, true, false},
		{"unreadable", fakeLimit{getErr: errors.New("ENOSYS")}, 3000, nil, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := c.lim
			w, err := ensureFiles(*f.limiter(), c.need)
			if (err != nil) != c.wantErr || (w != "") != c.wantWarning {
				t.Fatalf("warning %q, error %v", w, err)
			}
			if !equalU64(f.set, c.wantSet) {
				t.Errorf("set %v, want %v", f.set, c.wantSet)
			}
			var le *limitError
			if c.wantErr && (!errors.As(err, &le) || le.need != c.need || le.hard != c.lim.hard) {
				t.Errorf("error %#v", err)
			}
		})
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFilesNeededCountsBothEndsInProcess(t *testing.T) {
	if got := filesNeeded(10000, true); got != 2*10000+fileBase {
		t.Errorf("in-process: %d", got)
	}
	if got := filesNeeded(10000, false); got != 10000+fileBase {
		t.Errorf("external: %d", got)
	}
}

// bench conn -c 10000 in-process against a hard limit of 20,000: both ends
// of every connection are in this process, so it cannot fit; the error
// says why and points at a separate broker, not at --shard (which the
// in-process broker refuses). Nothing is dialled.
func TestFileLimitInProcessSaysRunTheBrokerSeparately(t *testing.T) {
	f := &fakeLimit{soft: 1024, hard: 20000}
	o := testOptions(t, ModeConn)
	o.Embedded, o.Clients, o.Subscribers, o.Count, o.Duration = true, 10000, 0, 0, time.Second
	o.fileLimit = f.limiter()
	var dials atomic.Int64
	o.Dial = func(context.Context, mqttconn.Config) (mqttconn.Client, error) {
		dials.Add(1)
		return nil, errors.New("not dialled in this test")
	}
	o.StartBroker = func(context.Context) (string, func() error, error) {
		t.Error("broker started before the limit was checked")
		return "", nil, errors.New("no broker")
	}
	_, err := Measure(context.Background(), o)
	if err == nil || dials.Load() != 0 {
		t.Fatalf("err %v, %d dials", err, dials.Load())
	}
	msg := err.Error()
	for _, want := range []string{"needs about 20032 open files", "hard limit 20000", "each of the 10000 connections holds two descriptors"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	hints := strings.Join(clierr.HintsOf(err), "\n")
	if !strings.Contains(hints, "'mqtk broker'") || !strings.Contains(hints, "-L") || strings.Contains(hints, "--shard") {
		t.Errorf("hints %q", hints)
	}
}

// With --shard only this shard's connections count.
func TestFileLimitUsesTheShardsShare(t *testing.T) {
	f := &fakeLimit{soft: 1024, hard: 1 << 20}
	o := testOptions(t, ModePubSub)
	o.Conn = mqttConfig(t, "mqtt://127.0.0.1:1")
	o.Clients, o.Subscribers, o.Shard, o.Shards, o.Count = 10000, 8, 1, 4, 100000
	o.fileLimit = f.limiter()
	o.Dial = func(context.Context, mqttconn.Config) (mqttconn.Client, error) {
		return nil, &clierr.Error{Kind: clierr.KindNetwork, Err: errors.New("no broker in this test")}
	}
	if _, err := Measure(context.Background(), o); clierr.KindOf(err) != clierr.KindNetwork {
		t.Fatalf("got %v", err)
	}
	if want := uint64(2500 + 2 + fileBase); !equalU64(f.set, []uint64{want}) {
		t.Errorf("raised to %v, want %d (this shard's 2,500 publishers and 2 subscribers)", f.set, want)
	}
}
