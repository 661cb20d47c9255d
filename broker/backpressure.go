package broker

import (
	"errors"
	"reflect"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// backpressureHook makes a publisher wait, instead of the broker dropping
// its message, while a subscriber's outbound queue is nearly full.
//
// mochi v2.7.9 delivers a message by a non-blocking send into the
// subscriber's queue (publishToClient: select … default) and discards it,
// QoS 1 and 2 included, when the queue is full. Its publishers are each
// read on their own goroutine, so under load ten readers outrun the one
// writer and most of what they read is thrown away (fan-in QoS 0 received
// 0.38× mosquitto's rate; BENCHMARKS.md). mosquitto's single loop slows its
// publishers through TCP instead.
//
// mochi asks the ACL hooks about every delivery, on the publisher's
// goroutine, with the subscriber as the client, just before that send. This
// hook is registered first, waits there while the queue is nearly full, and
// then answers "no opinion" (false) so the real ACL hook decides. While it
// waits the publisher's reader does not read, so TCP pushes back on the
// publisher. Order is kept: nothing of this publisher's was enqueued after
// the message that waits.
//
// A subscriber that stops reading must not stall its publishers for long.
// A wait ends once no write to the subscriber has completed for maxStall
// (counted from when the wait began, so a connection that was merely idle
// before a burst is not taken for a dead one). The connection then records
// that it stalled, and until one of its writes completes nobody waits for
// it again: mochi drops as it would without this hook, and our write
// timeout ends a connection that never reads again. So a dead subscriber
// costs its publishers maxStall once, not per message, and a live one that
// pauses for less than that loses nothing.
type backpressureHook struct {
	mqtt.HookBase
	queue    queueGauge
	maxStall time.Duration
}

// stallTimeout is how long a subscriber may go without completing a write
// before publishers stop waiting for it.
const stallTimeout = 500 * time.Millisecond

// backpressurePoll is the wait between looks at the queue: short beside a
// queue's drain time (about 1,000 packets at tens of thousands per second).
const backpressurePoll = 200 * time.Microsecond

func newBackpressureHook() (*backpressureHook, error) {
	g, err := newQueueGauge()
	if err != nil {
		return nil, err
	}
	return &backpressureHook{queue: g, maxStall: stallTimeout}, nil
}

func (h *backpressureHook) ID() string { return "mqtk-backpressure" }

func (h *backpressureHook) Provides(b byte) bool { return b == mqtt.OnACLCheck }

// OnACLCheck waits while cl's queue is three quarters full, until it is
// half empty, and never answers for the ACL. The check and mochi's send are
// not atomic: the last quarter of the queue is the headroom for publishers
// that pass the check at the same moment, ample at the default of 1,024.
func (h *backpressureHook) OnACLCheck(cl *mqtt.Client, _ string, write bool) bool {
	if write || cl.Net.Inline {
		return false // a PUBLISH being accepted, or the broker's own client
	}
	tc, _ := cl.Net.Conn.(*trackedConn)
	if tc == nil {
		return false
	}
	n, c := h.queue.lenCap(cl)
	if c == 0 || n < c*3/4 {
		return false
	}
	if tc.stalledAt.Load() == tc.lastWrite.Load() {
		return false // stalled, and no write has completed since
	}
	start := time.Now().UnixNano()
	for !cl.Closed() {
		time.Sleep(backpressurePoll)
		if n, _ = h.queue.lenCap(cl); n < c/2 {
			break
		}
		lw := tc.lastWrite.Load()
		if time.Now().UnixNano()-max(lw, start) > int64(h.maxStall) {
			tc.stalledAt.Store(lw)
			break
		}
	}
	return false
}

// queueGauge reads the length of a client's outbound queue, which mochi
// keeps in the unexported ClientState.outbound channel. Reading a channel's
// length is safe from any goroutine; reflection is the only way in, and
// newQueueGauge fails (and the broker does not start) if a mochi upgrade
// renames the field, rather than silently losing back-pressure.
type queueGauge struct{ index []int }

func newQueueGauge() (queueGauge, error) {
	f, ok := reflect.TypeFor[mqtt.ClientState]().FieldByName("outbound")
	if !ok || f.Type.Kind() != reflect.Chan {
		return queueGauge{}, errors.New("mochi's ClientState has no outbound channel: back-pressure needs updating for this mochi version")
	}
	return queueGauge{index: f.Index}, nil
}

func (g queueGauge) lenCap(cl *mqtt.Client) (n, c int) {
	v := reflect.ValueOf(&cl.State).Elem().FieldByIndex(g.index)
	if v.IsNil() {
		return 0, 0
	}
	return v.Len(), v.Cap()
}
