package pub

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

// maxAttempts bounds how often one message is sent again after errors
// that are not the broker's refusal, so that a message the connection
// cannot carry does not loop forever.
const maxAttempts = 5

// entry is one message the sender has handed to the client and not yet
// seen acknowledged or failed.
type entry struct {
	seq      uint64
	msg      *mqttconn.Message
	gen      int   // connection generation it was last sent on
	err      error // set by a non-refusal error; the main loop decides
	attempts int
}

// sender publishes through a bounded window of unacknowledged messages.
// Only the goroutine that calls publish/drain/close touches client, gen
// and the counters outside mu; done callbacks (library goroutines) touch
// pending and the counters under mu.
type sender struct {
	o         *Options
	cfg       mqttconn.Config
	client    mqttconn.Client
	gen       int
	genCtx    context.Context
	genCancel context.CancelFunc
	window    int
	reconnect bool
	sentAny   bool
	lastQoS   byte

	mu        sync.Mutex
	pending   map[uint64]*entry
	next      uint64
	sent      int
	acked     int
	failed    int
	resent    int
	firstFail error
	notify    chan struct{}
}

func newSender(ctx context.Context, o *Options, cfg mqttconn.Config, c mqttconn.Client, reconnect bool) *sender {
	w := o.MaxInflight
	if w == 0 {
		w = 20
	}
	s := &sender{o: o, cfg: cfg, window: w, reconnect: reconnect,
		pending: map[uint64]*entry{}, notify: make(chan struct{}, 1)}
	// Every redial uses the id the broker saw first, so that the session
	// (and any state it holds for us) is the same one.
	s.cfg.ClientID, s.cfg.IDPrefix = c.Info().ClientID, ""
	s.setClient(ctx, c)
	return s
}

// setClient starts a new connection generation. genCtx ends when the
// connection does, so a PublishAsync blocked on the old one returns.
func (s *sender) setClient(ctx context.Context, c mqttconn.Client) {
	if s.genCancel != nil {
		s.genCancel()
	}
	s.client = c
	s.gen++
	s.genCtx, s.genCancel = context.WithCancel(ctx)
	go func(done <-chan struct{}, ctx context.Context, cancel context.CancelFunc) {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}(c.Done(), s.genCtx, s.genCancel)
}

func (s *sender) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *sender) doneFunc(seq uint64, gen int) func(error) {
	return func(err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		defer s.wake()
		e := s.pending[seq]
		if e == nil {
			return // already settled by an earlier send of the same message
		}
		switch {
		case err == nil:
			delete(s.pending, seq)
			s.acked++
		case clierr.KindOf(err) == clierr.KindRejected:
			// The broker said no (reason >= 0x80): sending again would get
			// the same answer.
			delete(s.pending, seq)
			s.fail(fmt.Errorf("publish to %q: %w", e.msg.Topic, err))
		case e.gen == gen:
			e.err = err
		}
	}
}

// fail counts one message as lost; mu must be held.
func (s *sender) fail(err error) {
	s.failed++
	if s.firstFail == nil {
		s.firstFail = err
	}
}

// failNow counts a message that never reached the client (bad line,
// too large) and tells the user.
func (s *sender) failNow(err error) {
	s.mu.Lock()
	s.fail(err)
	s.mu.Unlock()
	s.o.IO.Warnf("%s", err)
}

// publish hands m to the window, waiting while it is full. It returns an
// error only when publishing cannot go on (context ended, connection lost
// and not allowed or unable to come back).
func (s *sender) publish(ctx context.Context, m *mqttconn.Message) error {
	if err := s.checkSize(m); err != nil {
		if !s.reconnect {
			return err
		}
		s.failNow(err)
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
		return nil
	}
	// MQTT orders messages per QoS level only, and a broker forwards a
	// QoS 2 message later in the handshake than a QoS 0 one, so a change
	// of QoS waits until everything before it is acknowledged: a replay
	// or a JSONL stream with mixed QoS then arrives in file order.
	limit := s.window
	if s.sentAny && m.QoS != s.lastQoS {
		limit = 1
	}
	s.sentAny, s.lastQoS = true, m.QoS
	if err := s.waitBelow(ctx, limit); err != nil {
		return err
	}
	s.mu.Lock()
	s.next++
	seq, gen := s.next, s.gen
	s.pending[seq] = &entry{seq: seq, msg: m, gen: gen, attempts: 1}
	s.sent++
	s.mu.Unlock()
	s.client.PublishAsync(s.genCtx, m, s.doneFunc(seq, gen))
	return nil
}

// wait blocks until a callback settles something, the connection ends or
// ctx ends.
func (s *sender) wait(ctx context.Context) error {
	select {
	case <-s.notify:
	case <-s.client.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// settle handles a lost connection and messages that came back with an
// error: without reconnect it returns the error; with it, it redials and
// sends every unacknowledged message again, oldest first.
func (s *sender) settle(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	down := false
	select {
	case <-s.client.Done():
		down = true
	default:
	}
	s.mu.Lock()
	var errored *entry
	for _, e := range s.pending {
		if e.err != nil && (errored == nil || e.seq < errored.seq) {
			errored = e
		}
	}
	s.mu.Unlock()
	if !down && errored == nil {
		return nil
	}
	cause := s.client.Err()
	if cause == nil && errored != nil {
		cause = errored.err
	}
	if cause == nil {
		cause = errors.New("connection closed")
	}
	if !s.reconnect {
		if down && s.awaitVerdicts(ctx) {
			// Every message got its answer before the connection went
			// (a refusal among them is reported by failure()).
			return nil
		}
		return fmt.Errorf("publish: %w", cause)
	}
	s.o.IO.Warnf("connection lost (%v): reconnecting", cause)
	_ = s.client.Disconnect(context.WithoutCancel(ctx))
	c, err := s.redial(ctx)
	if err != nil {
		return err
	}
	s.setClient(ctx, c)
	s.mu.Lock()
	resend := make([]*entry, 0, len(s.pending))
	for _, e := range s.pending {
		if e.attempts >= maxAttempts {
			delete(s.pending, e.seq)
			s.fail(fmt.Errorf("publish to %q failed %d times: %w", e.msg.Topic, e.attempts, cmpErr(e.err, cause)))
			continue
		}
		e.gen, e.err = s.gen, nil
		e.attempts++
		resend = append(resend, e)
	}
	slices.SortFunc(resend, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	s.resent += len(resend)
	gen := s.gen
	s.mu.Unlock()
	s.o.IO.Infof("reconnected to %s: sending %d unacknowledged messages again", s.cfg.Addr(), len(resend))
	for _, e := range resend {
		s.client.PublishAsync(s.genCtx, e.msg, s.doneFunc(e.seq, gen))
	}
	return nil
}

// awaitVerdicts waits a little for the done callbacks of messages still in
// flight on a closed connection: each is called exactly once, and a
// PUBACK that arrived just before the close carries the broker's reason,
// which says more than "connection closed". It reports whether every
// message was settled without a connection error.
func (s *sender) awaitVerdicts(ctx context.Context) bool {
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		n, errored := len(s.pending), false
		for _, e := range s.pending {
			errored = errored || e.err != nil
		}
		s.mu.Unlock()
		switch {
		case n == 0:
			return true
		case errored:
			return false
		}
		select {
		case <-s.notify:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// redial tries to connect again with growing pauses, for at most
// ReconnectTimeout.
func (s *sender) redial(ctx context.Context) (mqttconn.Client, error) {
	limit := s.o.ReconnectTimeout
	if limit == 0 {
		limit = time.Minute
	}
	deadline := time.Now().Add(limit)
	pause := 50 * time.Millisecond
	var last error
	for attempt := 1; ; attempt++ {
		c, err := s.o.Dial(ctx, s.cfg)
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if k := clierr.KindOf(err); k == clierr.KindRefused || k == clierr.KindTLS || k == clierr.KindUsage {
			// Trying again would be refused the same way.
			return nil, fmt.Errorf("reconnect: %w", err)
		}
		if time.Now().Add(pause).After(deadline) {
			return nil, fmt.Errorf("reconnect: gave up after %d attempts in %s: %w", attempt, limit, last)
		}
		// Real time on purpose: this waits for a broker, not for pacing.
		if err := (RealClock{}).Sleep(ctx, pause); err != nil {
			return nil, err
		}
		pause = min(pause*2, 2*time.Second)
	}
}

// drain waits until every message handed over is acknowledged or failed,
// reconnecting as needed.
func (s *sender) drain(ctx context.Context) error { return s.waitBelow(ctx, 1) }

// waitBelow waits until fewer than limit messages are pending, settling
// what the callbacks report and reconnecting as needed.
func (s *sender) waitBelow(ctx context.Context, limit int) error {
	for {
		if err := s.settle(ctx); err != nil {
			return err
		}
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n < limit {
			return nil
		}
		if err := s.wait(ctx); err != nil {
			return err
		}
	}
}

// close ends the connection cleanly.
func (s *sender) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = s.client.Disconnect(ctx)
	s.genCancel()
}

// abandon counts everything still pending as failed (the stream ended
// without them being acknowledged).
func (s *sender) abandon(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for seq, e := range s.pending {
		delete(s.pending, seq)
		s.fail(fmt.Errorf("publish to %q not acknowledged: %w", e.msg.Topic, cause))
	}
}

type counts struct{ sent, acked, failed, resent int }

func (s *sender) counts() (counts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return counts{s.sent, s.acked, s.failed, s.resent}, s.firstFail
}

// checkSize refuses a message the broker announced it would not take.
func (s *sender) checkSize(m *mqttconn.Message) error {
	info := s.client.Info()
	if m.TopicAlias > 0 && m.TopicAlias > info.TopicAliasMaximum {
		// [MQTT-3.3.2-9] a client must not send an alias above the
		// broker's Topic Alias Maximum (0 means none are accepted).
		return clierr.Usagef("--topic-alias %d: the broker accepts topic aliases up to %d (from CONNACK; 0 means none)", m.TopicAlias, info.TopicAliasMaximum).Hintf("use a smaller alias or leave it out")
	}
	max := info.MaximumPacketSize
	if max == 0 {
		return nil
	}
	if n := packetSize(m, s.cfg.Version == mqttconn.V5); n > int(max) {
		return clierr.Usagef("message to %q is %d bytes on the wire, over the broker's maximum packet size of %d (from CONNACK)", m.Topic, n, max).Hintf("send a smaller payload or raise the broker's limit")
	}
	return nil
}

// packetSize is the encoded size of the PUBLISH packet for m.
func packetSize(m *mqttconn.Message, v5 bool) int {
	n := 2 + len(m.Topic) + len(m.Payload)
	if m.QoS > 0 {
		n += 2 // packet identifier
	}
	if v5 {
		p := 0
		if m.PayloadFormat != nil {
			p += 2
		}
		if m.MessageExpiry != nil {
			p += 5
		}
		if m.TopicAlias != 0 {
			p += 3
		}
		if m.ResponseTopic != "" {
			p += 3 + len(m.ResponseTopic)
		}
		if m.CorrelationData != nil {
			p += 3 + len(m.CorrelationData)
		}
		if m.ContentType != "" {
			p += 3 + len(m.ContentType)
		}
		for _, u := range m.UserProperties {
			p += 5 + len(u.Key) + len(u.Value)
		}
		n += varintLen(p) + p
	}
	return 1 + varintLen(n) + n
}

func varintLen(n int) int {
	l := 1
	for n >= 128 {
		n /= 128
		l++
	}
	return l
}
