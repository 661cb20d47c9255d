package bench

import (
	"encoding/binary"
	"errors"
)

// The payload header every bench publisher writes at the start of each
// message, so that a subscriber can measure latency and account for loss
// without any side channel:
//
//	[0:3]   magic "mqb"
//	[3]     flags (flagWallClock: timestamps are Unix ns, not run-relative;
//	        flagWarmup: sent during the publisher's warm-up, not measured)
//	[4:8]   publisher id, unique across shards (big endian)
//	[8:16]  per-publisher sequence number, from 0
//	[16:24] intended send time, ns
//	[24:32] actual send time, ns
//
// Keeping both times lets a scheduled run report latency from the intended
// time (free of coordinated omission) and from the actual send, side by side.
const (
	HeaderSize    = 32
	flagWallClock = 1
	flagWarmup    = 2
)

var headerMagic = [3]byte{'m', 'q', 'b'}

// errNotBench marks a payload that did not come from a bench publisher.
var errNotBench = errors.New("payload has no bench header")

type header struct {
	wallClock bool
	warmup    bool
	pub       uint32
	seq       uint64
	intended  int64
	actual    int64
}

func (h *header) put(b []byte) {
	copy(b[0:3], headerMagic[:])
	b[3] = 0
	if h.wallClock {
		b[3] |= flagWallClock
	}
	if h.warmup {
		b[3] |= flagWarmup
	}
	binary.BigEndian.PutUint32(b[4:8], h.pub)
	binary.BigEndian.PutUint64(b[8:16], h.seq)
	binary.BigEndian.PutUint64(b[16:24], uint64(h.intended))
	binary.BigEndian.PutUint64(b[24:32], uint64(h.actual))
}

func parseHeader(b []byte) (header, error) {
	if len(b) < HeaderSize || b[0] != headerMagic[0] || b[1] != headerMagic[1] || b[2] != headerMagic[2] {
		return header{}, errNotBench
	}
	return header{
		wallClock: b[3]&flagWallClock != 0,
		warmup:    b[3]&flagWarmup != 0,
		pub:       binary.BigEndian.Uint32(b[4:8]),
		seq:       binary.BigEndian.Uint64(b[8:16]),
		intended:  int64(binary.BigEndian.Uint64(b[16:24])),
		actual:    int64(binary.BigEndian.Uint64(b[24:32])),
	}, nil
}
