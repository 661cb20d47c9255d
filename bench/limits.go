package bench

import (
	"fmt"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

// cpuTimes is a reading of this process's CPU time, in seconds, and of
// the clock when it was taken, so that two readings give both the CPU
// used and the wall time it was used in.
type cpuTimes struct {
	user, sys float64
	at        time.Time
}

// sub returns the CPU used between b and a, and the wall time between them.
func (a cpuTimes) sub(b cpuTimes) (cpu cpuTimes, wall time.Duration) {
	return cpuTimes{user: a.user - b.user, sys: a.sys - b.sys}, a.at.Sub(b.at)
}

// fileLimiter reads and sets the open-file limit (RLIMIT_NOFILE).
type fileLimiter struct {
	get func() (soft, hard uint64, err error)
	set func(soft, hard uint64) error
}

// fileBase is what the process holds open besides its connections:
// stdio, the poller, the in-process broker's listener, with room to spare.
const fileBase = 32

// filesNeeded counts the descriptors one process needs for conns
// connections. With the broker in-process both ends of every loopback
// connection live in this process: two descriptors each.
func filesNeeded(conns int, embedded bool) int {
	if embedded {
		return 2*conns + fileBase
	}
	return conns + fileBase
}

// ensureFiles makes sure the process may open need file descriptors: it
// raises the soft RLIMIT_NOFILE up to the hard limit when needed, and
// otherwise says exactly what to do, before any connection is opened
// (running out half way through a ramp gives confusing errors).
func ensureFiles(lim fileLimiter, need int) (warning string, err error) {
	soft, hard, err := lim.get()
	if err != nil {
		return fmt.Sprintf("could not read the open-file limit: %v", err), nil
	}
	if soft >= uint64(need) {
		return "", nil
	}
	if hard >= uint64(need) {
		if err := lim.set(uint64(need), hard); err == nil {
			return "", nil
		}
	}
	return "", &limitError{need: need, soft: soft, hard: hard}
}

type limitError struct {
	need       int
	soft, hard uint64
}

func (e *limitError) Error() string {
	return fmt.Sprintf("this run needs about %d open files but the limit is %d (hard limit %d)", e.need, e.soft, e.hard)
}

// connsInProcess counts the connections this process (this shard) opens.
func (o *Options) connsInProcess() int {
	n := 0
	if o.Mode != ModeSub {
		lo, hi := shardRange(o.Clients, o.Shard, o.Shards)
		n += hi - lo
	}
	if o.Mode == ModePubSub || o.Mode == ModeSub {
		lo, hi := shardRange(o.Subscribers, o.Shard, o.Shards)
		n += hi - lo
	}
	return n
}

// connsInTotal counts the connections of the whole run, every shard.
func (o *Options) connsInTotal() int {
	n := 0
	if o.Mode != ModeSub {
		n += o.Clients
	}
	if o.Mode == ModePubSub || o.Mode == ModeSub {
		n += o.Subscribers
	}
	return n
}

// fileLimitError explains a limitError for this run: what needs the files
// and what to do about it.
func (o *Options) fileLimitError(err error, conns, need int) error {
	hints := []string{fmt.Sprintf("raise it in the shell that runs mqtk: ulimit -n %d (above the hard limit that needs root: /etc/security/limits.conf, or LimitNOFILE= for a systemd unit)", need)}
	if o.Embedded {
		err = fmt.Errorf("%w: with the broker in-process, each of the %d connections holds two descriptors in this process (the client's end and the broker's)", err, conns)
		hints = append(hints, fmt.Sprintf("or run the broker in its own process ('mqtk broker') and pass its address with -L, e.g. -L mqtt://127.0.0.1:1883: this process then needs about %d", filesNeeded(conns, false)))
	} else {
		hints = append(hints, "or split the clients over several processes with --shard I/N")
	}
	return &clierr.Error{Kind: clierr.KindOther, Op: "check the open-file limit", Err: err, Hints: hints}
}
