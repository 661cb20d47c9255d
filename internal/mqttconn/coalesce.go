package mqttconn

import (
	"errors"
	"net"
	"sync"
)

// coalescer writes to a connection from a goroutine of its own, so that
// packets a fast publisher hands over while a write system call is under
// way go out together in the next one. One system call per packet was
// most of bench's CPU per QoS 0 message (the loopback's receive work is
// charged to the sender's write). Nothing waits for a timer: a lone packet
// is written as soon as the flusher wakes, so latency grows only by that
// hand-over.
type coalescer struct {
	conn net.Conn

	mu      sync.Mutex
	space   *sync.Cond // signalled when pending shrinks or an error is set
	pending []byte
	closing bool  // Close has begun: later writes fail rather than vanish
	err     error // sticky: the first write error, or errClosed
	wake    chan struct{}
	done    chan struct{}
}

// maxPending bounds what a publisher may run ahead of the socket; past it
// Write blocks, as a plain write to a full socket would.
const maxPending = 256 << 10

// keepBuffer is the largest write buffer kept between bursts.
const keepBuffer = 64 << 10

var errClosed = errors.New("connection closed")

func newCoalescer(c net.Conn) *coalescer {
	w := &coalescer{conn: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.space = sync.NewCond(&w.mu)
	go w.flush()
	return w
}

// Write queues b for the flusher. A write error surfaces on a later Write
// (and, for the MQTT client, as the connection ending), as it would with
// the kernel's own socket buffer.
func (w *coalescer) Write(b []byte) (int, error) {
	w.mu.Lock()
	for w.err == nil && len(w.pending) >= maxPending {
		w.space.Wait()
	}
	if w.err != nil || w.closing {
		err := w.err
		if err == nil {
			err = errClosed
		}
		w.mu.Unlock()
		return 0, err
	}
	w.pending = append(w.pending, b...)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(b), nil
}

func (w *coalescer) flush() {
	defer close(w.done)
	var out []byte
	for range w.wake {
		for {
			w.mu.Lock()
			if len(w.pending) == 0 || w.err != nil {
				stop := w.err != nil
				w.mu.Unlock()
				if stop {
					return
				}
				break
			}
			out, w.pending = w.pending, out[:0]
			w.space.Broadcast()
			w.mu.Unlock()
			if _, err := w.conn.Write(out); err != nil {
				w.fail(err)
				return
			}
			if cap(out) > keepBuffer {
				out = nil // a burst's buffer is not kept for the connection's life
			}
		}
	}
}

func (w *coalescer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.space.Broadcast()
	w.mu.Unlock()
}

// Close writes what is pending (a DISCONNECT is usually last), then stops
// the flusher. It does not close the connection.
func (w *coalescer) Close() {
	// From here on Write fails, so nothing is accepted that the stopping
	// flusher would then leave unwritten. Wait until it has taken what
	// is pending, then stop it.
	w.mu.Lock()
	w.closing = true
	for w.err == nil && len(w.pending) > 0 {
		w.space.Wait()
	}
	w.mu.Unlock()
	w.fail(errClosed)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
}
