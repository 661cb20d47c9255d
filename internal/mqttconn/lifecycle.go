package mqttconn

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

// lifecycle is the state both Client implementations keep the same way:
// what CONNACK said, when the connection ended and why, and the counters
// Disconnect uses to wait for publishers in flight. mu guards every field
// below it; cond is signalled when senders drops.
type lifecycle struct {
	info Info
	done chan struct{} // closed once everything has stopped

	mu      sync.Mutex
	cond    *sync.Cond
	closed  bool
	senders int
	err     error
	endOnce sync.Once

	// unacked counts received QoS 1/2 messages whose PUBACK or PUBREC has
	// not been written yet. The library acknowledges after our handler
	// returns, and the handler may already have told the caller "that was
	// the last one": Disconnect waits for this to reach zero first, or the
	// DISCONNECT overtakes the acknowledgement and the broker delivers the
	// message again to the next session (seen with `sub -c -C 1`).
	unacked atomic.Int64
}

// ackWait bounds how long Disconnect waits for acknowledgements, in case a
// handler never returns.
const ackWait = time.Second

// waitAcks waits until every received message is acknowledged, at most d.
func (l *lifecycle) waitAcks(d time.Duration) {
	deadline := time.Now().Add(d)
	for l.unacked.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

func (l *lifecycle) initLifecycle() {
	l.done = make(chan struct{})
	l.cond = sync.NewCond(&l.mu)
}

func (l *lifecycle) Info() Info            { return l.info }
func (l *lifecycle) Done() <-chan struct{} { return l.done }

func (l *lifecycle) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// markClosed records that the client is ending, and why (nil for a clean
// Disconnect). Callers hold endOnce, so it runs once.
func (l *lifecycle) markClosed(err error) {
	l.mu.Lock()
	l.closed = true
	l.err = err
	l.mu.Unlock()
}

// enter counts a publisher in, unless the client has ended; Disconnect
// waits for every publisher counted in to leave.
func (l *lifecycle) enter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.senders++
	return true
}

// leave counts a publisher out.
func (l *lifecycle) leave() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.senders--
	if l.senders == 0 {
		l.cond.Broadcast()
	}
}

// waitDone waits until the client has fully stopped, or ctx ends.
func (l *lifecycle) waitDone(ctx context.Context) error {
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closedErr is what operations on an ended client return.
func (l *lifecycle) closedErr() error {
	if err := l.Err(); err != nil {
		return err
	}
	return &clierr.Error{Kind: clierr.KindOther, Op: "publish", Err: errors.New("the connection is closed")}
}

// publishAndWait is Publish for both implementations: PublishAsync, then
// wait for its outcome or for ctx.
// takeSlot waits for room for one more QoS 1 or 2 publish in flight
// (a token in sem), until ctx ends or the client does (quit closed).
func (l *lifecycle) takeSlot(ctx context.Context, sem chan struct{}, quit <-chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-quit:
		return l.closedErr()
	}
}

func publishAndWait(ctx context.Context, c Client, m *Message) error {
	ch := make(chan error, 1)
	c.PublishAsync(ctx, m, func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
