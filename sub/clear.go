package sub

import (
	"context"
	"fmt"
	"sync"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// clearer sends --remove-retained's clearing messages from a goroutine of
// its own, one at a time at QoS 1 (as mosquitto_sub does), so that each is
// known to have reached the broker before mqtk exits. The run loop only
// queues topics: waiting there for a PUBACK could deadlock, because the
// connection's reader hands messages to the run loop and reads the PUBACK
// only after the retained messages in front of it.
type clearer struct {
	ctx     context.Context
	mu      sync.Mutex
	waiting []clearItem
	running bool
	idle    chan struct{} // closed when the queue empties; replaced on add
	err     error         // the first failure
}

type clearItem struct {
	c     mqttconn.Client
	topic string
}

func newClearer(ctx context.Context) *clearer {
	idle := make(chan struct{})
	close(idle)
	return &clearer{ctx: ctx, idle: idle}
}

// add queues an empty retained message for topic on c.
func (cl *clearer) add(c mqttconn.Client, topic string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.waiting = append(cl.waiting, clearItem{c, topic})
	if !cl.running {
		cl.running = true
		cl.idle = make(chan struct{})
		go cl.drain(cl.idle)
	}
}

func (cl *clearer) drain(idle chan struct{}) {
	for {
		cl.mu.Lock()
		if len(cl.waiting) == 0 {
			cl.running = false
			close(idle)
			cl.mu.Unlock()
			return
		}
		it := cl.waiting[0]
		cl.waiting = cl.waiting[1:]
		cl.mu.Unlock()
		// An empty retained PUBLISH removes the retained message [MQTT-3.3.1-6].
		err := it.c.Publish(cl.ctx, &mqttconn.Message{Topic: it.topic, Retain: true, QoS: syncQoS(it.c)})
		if err != nil {
			cl.mu.Lock()
			if cl.err == nil {
				cl.err = fmt.Errorf("clear the retained message on %s: %w", it.topic, err)
			}
			cl.mu.Unlock()
		}
	}
}

// wait returns once every queued message was acknowledged or ctx ends,
// with the first failure.
func (cl *clearer) wait(ctx context.Context) error {
	cl.mu.Lock()
	idle := cl.idle
	cl.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
		cl.mu.Lock()
		n := len(cl.waiting)
		cl.mu.Unlock()
		return fmt.Errorf("--remove-retained: %d retained messages may not have been cleared: %w", n+1, ctx.Err())
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.err
}
