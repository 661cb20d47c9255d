package broker

import (
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
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
// A subscriber that reads slowly or not at all must not set the pace for
// every publisher. A wait ends, and the subscriber is marked slow, when no
// write to it has completed for noProgress (a dead client, or a pager
// paused on `mqtk sub -t '#'`), or when the wait has lasted maxWait even
// though it trickles along. Nobody waits for a slow subscriber again until
// its queue has drained below a quarter; meanwhile mochi drops for it, as
// it would without this hook (and the write timeout ends a connection that
// never reads again). A subscriber that is merely the bottleneck of a flood
// keeps completing writes, so its publishers slow down instead of losing
// messages: with a flat 1 s cap, fan-in QoS 0 overload lost 53k–76k of
// ~500k messages a run and 16 KB messages once 250k; with a 250 ms cap, as
// many as before the hook (~1M).
//
// The check and mochi's send are not atomic: the last quarter of the queue
// is headroom for publishers that pass the check at the same moment (256
// at the default queue of 1,024). More publishers than that delivering to
// one subscriber at once can still see a drop.
//
// When a queue is full all the same, the oldest QoS 0 message goes first
// (makeRoom), so a subscriber that falls behind a QoS 0 stream gets the
// newest messages when it catches up, and the drop is counted.
type backpressureHook struct {
	mqtt.HookBase
	queue      queueGauge
	epoch      time.Time // trackedConn.lastWrite counts from here
	noProgress time.Duration
	maxWait    time.Duration
	// evicted is called once per queued message discarded by makeRoom,
	// to count it where mochi counts its own drops.
	evicted func()
}

const (
	stallNoProgress = 500 * time.Millisecond
	stallMaxWait    = 5 * time.Second // under common client ping timeouts (10 s)
)

// Waiting polls the queue, starting often (a queue drains in milliseconds
// at tens of thousands of packets a second) and backing off, so hundreds
// of waiting publishers do not take the CPU the writer needs.
const (
	pollFirst = 100 * time.Microsecond
	pollMax   = 5 * time.Millisecond
)

func newBackpressureHook(epoch time.Time) (*backpressureHook, error) {
	g, err := newQueueGauge()
	if err != nil {
		return nil, err
	}
	return &backpressureHook{queue: g, epoch: epoch, noProgress: stallNoProgress, maxWait: stallMaxWait}, nil
}

func (h *backpressureHook) ID() string { return "mqtk-backpressure" }

func (h *backpressureHook) Provides(b byte) bool { return b == mqtt.OnACLCheck }

// OnACLCheck waits while cl's queue is three quarters full, until it is
// half empty, and never answers for the ACL.
func (h *backpressureHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write || cl.Net.Inline {
		return false // a PUBLISH being accepted, or the broker's own client
	}
	tc, _ := cl.Net.Conn.(*trackedConn)
	if tc == nil {
		return false
	}
	n, c := h.queue.lenCap(cl)
	if c == 0 {
		return false
	}
	if n <= c/4 {
		if tc.slow.Load() {
			tc.slow.Store(false) // it caught up
		}
		return false
	}
	if strings.ContainsAny(topic, "+#") {
		return false // a SUBSCRIBE filter, not a delivery
	}
	if n < c-c/4 {
		return false // room left
	}
	if tc.slow.Load() {
		h.makeRoom(cl, tc)
		return false
	}
	start, poll := time.Since(h.epoch), pollFirst
	for !cl.Closed() && !tc.slow.Load() {
		time.Sleep(poll)
		poll = min(2*poll, pollMax)
		if n, _ = h.queue.lenCap(cl); n <= c/2 {
			return false
		}
		now := time.Since(h.epoch)
		progress := max(time.Duration(tc.lastWrite.Load()), start)
		if now-progress > h.noProgress || now-start > h.maxWait {
			tc.slow.Store(true)
		}
	}
	h.makeRoom(cl, tc)
	return false
}

// makeRoom discards the oldest queued message when cl's queue is full, so
// the delivery mochi is about to attempt finds a place instead of being
// dropped (mochi drops the newest message, QoS 1 and 2 included:
// publishToClient's select … default).
//
// A channel can only be read at its head, and the head may be taken only
// when it is known to be QoS 0: mochi records every QoS 1/2 message in the
// client's in-flight table before queueing it and removes it only after it
// was written and acknowledged, so an empty in-flight table means every
// queued packet is QoS 0. While QoS 1/2 messages are outstanding nothing is
// evicted and mochi drops the new message as before; that is the one
// departure from "oldest QoS 0 first", and mochi counts that drop too.
//
// evictMu serialises evictions for one client so two publishers do not
// each take a message for one free place.
func (h *backpressureHook) makeRoom(cl *mqtt.Client, tc *trackedConn) {
	tc.evictMu.Lock()
	defer tc.evictMu.Unlock()
	if cl.Closed() || cl.State.Inflight.Len() > 0 {
		return
	}
	if n, c := h.queue.lenCap(cl); n < c {
		return
	}
	pk, ok := h.queue.tryRecv(cl)
	if !ok {
		return
	}
	if pk.FixedHeader.Qos > 0 {
		if _, live := cl.State.Inflight.Get(pk.PacketID); !live {
			// mochi's expiry sweep removed its in-flight entry while it
			// was still queued: it has expired and must not be delivered
			// [MQTT-3.3.2-5], so it is the one to drop.
			if h.evicted != nil {
				h.evicted()
			}
			return
		}
		// A QoS 1/2 message that arrived between the in-flight check and
		// the receive (the queue had drained). Put it back; the queue was
		// empty a moment ago, so it stays first in all but that race.
		// If a publisher took the freed place meanwhile, putBack fails;
		// the message is not lost: its in-flight entry stays, and it is
		// resent with the session on the client's next connection.
		_ = h.queue.putBack(cl, pk)
		return
	}
	if h.evicted != nil {
		h.evicted()
	}
}

// queueGauge reads the length of a client's outbound queue, which mochi
// keeps in the unexported ClientState.outbound channel. Reading a channel's
// length is safe from any goroutine; reflection is the only way in, and
// newQueueGauge fails (and the broker does not start) if a mochi upgrade
// renames the field, rather than silently losing back-pressure.
//
// Evicting (tryRecv) needs the channel itself, which reflection hands out
// for an unexported field only through its address; outboundQty, mochi's
// count of queued packets, is kept in step the way mochi's writer does.
type queueGauge struct {
	index    []int
	qtyIndex []int
}

func newQueueGauge() (queueGauge, error) {
	st := reflect.TypeFor[mqtt.ClientState]()
	f, ok := st.FieldByName("outbound")
	if !ok || f.Type != reflect.TypeFor[chan *packets.Packet]() {
		return queueGauge{}, errors.New("mochi's ClientState has no outbound channel: back-pressure needs updating for this mochi version")
	}
	q, ok := st.FieldByName("outboundQty")
	if !ok || q.Type.Kind() != reflect.Int32 {
		return queueGauge{}, errors.New("mochi's ClientState has no outboundQty counter: back-pressure needs updating for this mochi version")
	}
	return queueGauge{index: f.Index, qtyIndex: q.Index}, nil
}

// queue returns cl's outbound channel as a usable value.
func (g queueGauge) queue(cl *mqtt.Client) chan *packets.Packet {
	v := reflect.ValueOf(&cl.State).Elem().FieldByIndex(g.index)
	return *(*chan *packets.Packet)(unsafe.Pointer(v.UnsafeAddr()))
}

func (g queueGauge) qty(cl *mqtt.Client) *int32 {
	v := reflect.ValueOf(&cl.State).Elem().FieldByIndex(g.qtyIndex)
	return (*int32)(unsafe.Pointer(v.UnsafeAddr()))
}

// tryRecv takes the packet at the head of cl's queue, if there is one.
func (g queueGauge) tryRecv(cl *mqtt.Client) (*packets.Packet, bool) {
	q := g.queue(cl)
	if q == nil {
		return nil, false
	}
	select {
	case pk := <-q:
		atomic.AddInt32(g.qty(cl), -1)
		return pk, true
	default:
		return nil, false
	}
}

// putBack queues pk again at the tail, without blocking; false when the
// queue is full.
func (g queueGauge) putBack(cl *mqtt.Client, pk *packets.Packet) bool {
	select {
	case g.queue(cl) <- pk:
		atomic.AddInt32(g.qty(cl), 1)
		return true
	default:
		return false
	}
}

func (g queueGauge) lenCap(cl *mqtt.Client) (n, c int) {
	v := reflect.ValueOf(&cl.State).Elem().FieldByIndex(g.index)
	if v.IsNil() {
		return 0, 0
	}
	return v.Len(), v.Cap()
}
