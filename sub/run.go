package sub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/topic"
)

// Run connects, subscribes and handles messages until an ending condition
// is met (count, timeout, idle, retained-only, -E), the context is
// cancelled, or the connection fails for good.
//
// Exit semantics, as the Kind of the returned error:
//   - nil: count reached, idle ended, retained messages done, -E acknowledged
//   - KindTimeout: -W reached before the count (exit 27, as mosquitto_sub)
//   - KindUnmet: --match given and fewer than max(-C, 1) matches when -W
//     or --idle ends the run (with enough, they end it with nil)
//   - KindRejected: the broker refused a subscription (SUBACK >= 0x80)
//   - context.Canceled: interrupted
func Run(ctx context.Context, o *Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	r := newRunner(o)
	defer r.release()
	return r.run(ctx)
}

// runner is the state of one Run. Everything except the OnMessage and
// OnConnectionLost callbacks runs on Run's goroutine.
type runner struct {
	o        *Options
	now      func() time.Time
	msgs     chan *mqttconn.Message
	stop     chan struct{} // closed by release, unblocking the reader
	stopOnce sync.Once
	ctx      context.Context // Run's, for work that outlives connect (the sync message)
	client   mqttconn.Client
	cfg      mqttconn.Config
	pr       *printer
	dump     *dumper
	stats    *statsTable
	sentinel string // topic used to learn that the retained messages are done (sentinelPrefix + random)
	// syncC receives the result of publishing to sentinel (nil when PUBACK
	// said yes); quiet ends --retained-only when the sync message is lost.
	syncC   chan error
	quiet   *time.Timer
	quietOn bool
	// shown holds the topics --retained-only has handled. A topic has one
	// retained message, so a second copy is not news: a reconnect
	// subscribes again (a 3.1.1 broker may drop the connection over the
	// sync message [MQTT-3.3.5-2]), or two filters overlap.
	shown   map[string]bool
	cleared map[string]bool
	clear   *clearer // --remove-retained's messages, once one is queued
	count   int
	start   time.Time
}

// release unblocks the message handler for good; Run is done with messages.
func (r *runner) release() { r.stopOnce.Do(func() { close(r.stop) }) }

func newRunner(o *Options) *runner {
	r := &runner{
		o:       o,
		now:     o.Now,
		msgs:    make(chan *mqttconn.Message, 4096),
		stop:    make(chan struct{}),
		cleared: map[string]bool{},
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.cfg = o.Conn
	r.cfg.OnMessage = func(m *mqttconn.Message) {
		// Blocking here is deliberate: the connection's reader waits, and
		// TCP pushes back on the broker instead of memory growing.
		select {
		case r.msgs <- m:
		case <-r.stop:
		}
	}
	if o.RetainedOnly {
		var b [8]byte
		_, _ = rand.Read(b[:])
		r.sentinel = sentinelPrefix + hex.EncodeToString(b[:])
		r.syncC = make(chan error, 1)
		r.shown = map[string]bool{}
	}
	return r
}

func (r *runner) run(ctx context.Context) error {
	o := r.o
	r.start = r.now()
	r.pr = newPrinter(o, func(s string) { o.IO.Warnf("%s", s) })
	if o.DumpDir != "" {
		d, err := newDumper(o.DumpDir)
		if err != nil {
			return err
		}
		r.dump = d
	}
	if o.Stats || o.Watch {
		r.stats = newStatsTable()
	}
	r.quiet = time.NewTimer(time.Hour)
	r.quiet.Stop()
	defer r.quiet.Stop()
	// -W counts from the start, as mosquitto_sub's alarm does: a broker
	// that never acknowledges the CONNECT or the SUBSCRIBE ends the run
	// at -W like one that sends no message.
	var timeoutC, idleC, retryC, watchC <-chan time.Time
	cctx := ctx
	if o.Timeout > 0 {
		t := time.NewTimer(o.Timeout)
		defer t.Stop()
		timeoutC = t.C
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	r.ctx = ctx
	if err := r.connect(cctx, false); err != nil {
		if ctx.Err() == nil && cctx.Err() != nil {
			err = &clierr.Error{Kind: clierr.KindTimeout,
				Err: fmt.Errorf("timed out after %s before the broker acknowledged the subscription", o.Timeout)}
		}
		return r.finish(err)
	}
	if o.ExitAfterSuback || len(o.Topics) == 0 {
		return r.finish(nil)
	}

	var idle *time.Timer
	if o.Idle > 0 {
		idle = time.NewTimer(o.Idle)
		defer idle.Stop()
		idleC = idle.C
	}
	if o.Watch {
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		watchC = tk.C
	}
	// Output is flushed when no message has been pending for flushDelay:
	// a pipe sees every message within a millisecond, while a burst of
	// thousands costs a few writes instead of one system call each.
	flushT := time.NewTimer(time.Hour)
	flushT.Stop()
	defer flushT.Stop()
	flushArmed := false
	backoff := 250 * time.Millisecond
	for {
		var doneC <-chan struct{}
		if r.client != nil {
			doneC = r.client.Done()
		}
		select {
		case m := <-r.msgs:
			if idle != nil {
				idle.Reset(o.Idle)
			}
			if r.quietOn {
				r.quiet.Reset(syncQuiet)
			}
			end, err := r.handle(ctx, m)
			if err != nil || end {
				return r.finish(err)
			}
			if len(r.msgs) == 0 && !flushArmed {
				flushT.Reset(flushDelay)
				flushArmed = true
			}
		case <-flushT.C:
			flushArmed = false
			if err := r.pr.flush(); err != nil {
				return r.finish(fmt.Errorf("write stdout: %w", err))
			}
		case <-timeoutC:
			if o.Match != nil {
				return r.finish(r.matchEnd(fmt.Sprintf("before the %s timeout", o.Timeout)))
			}
			return r.finish(&clierr.Error{Kind: clierr.KindTimeout,
				Err: fmt.Errorf("timed out after %s with %s", o.Timeout, r.countText())})
		case <-idleC:
			if o.Match != nil {
				return r.finish(r.matchEnd(fmt.Sprintf("before %s without messages", o.Idle)))
			}
			return r.finish(nil)
		case err := <-r.syncC:
			r.syncC = nil
			if err != nil && r.sentinel != "" {
				o.IO.Warnf("--retained-only: mqtk's sync message did not go through (%v); ending at the first message without retain, or after %s without messages",
					err, syncQuiet)
				r.sentinel = ""
			}
			r.armQuiet()
		case <-r.quiet.C:
			if r.sentinel != "" {
				o.IO.Warnf("--retained-only: mqtk's sync message on %s never came back: the broker dropped it (no right to publish or read there, or a full queue for this client, which drops retained messages too); ended after %s without messages",
					r.sentinel, syncQuiet)
			}
			return r.finish(nil)
		case <-doneC:
			cerr := r.client.Err()
			r.client = nil
			if !o.Reconnect {
				return r.finish(&clierr.Error{Kind: clierr.KindNetwork, Op: "connection lost", Err: cerr})
			}
			o.IO.Warnf("connection lost: %v; reconnecting", describe(cerr))
			retryC = time.After(backoff)
		case <-retryC:
			retryC = nil
			if err := r.connect(ctx, true); err != nil {
				if ctx.Err() != nil {
					return r.finish(ctx.Err())
				}
				if clierr.KindOf(err) == clierr.KindRejected || clierr.KindOf(err) == clierr.KindRefused {
					return r.finish(err)
				}
				backoff = min(backoff*2, 5*time.Second)
				o.IO.Warnf("reconnect failed: %v; retrying in %s", err, backoff)
				retryC = time.After(backoff)
				continue
			}
			backoff = 250 * time.Millisecond
			o.IO.Infof("reconnected to %s", r.client.Info().Addr)
		case <-watchC:
			r.stats.render(r.pr.w, r.now(), &r.pr.st, true)
			if err := r.pr.flush(); err != nil {
				return r.finish(fmt.Errorf("write stdout: %w", err))
			}
		case <-ctx.Done():
			return r.finish(ctx.Err())
		}
	}
}

// flushDelay bounds how long a printed message may wait in the buffer.
const flushDelay = time.Millisecond

// syncQuiet ends --retained-only when its sync message is refused or lost:
// retained messages come in a burst right after the SUBACK, so this long
// without any message means they are all in.
const syncQuiet = 2 * time.Second

func (r *runner) armQuiet() {
	r.quiet.Reset(syncQuiet)
	r.quietOn = true
}

// matchEnd is how -W and --idle end a --match run: success once at least
// max(-C, 1) payloads matched (without -C, any match is what was waited
// for), KindUnmet (exit 7) otherwise.
func (r *runner) matchEnd(when string) error {
	need := max(r.o.Count, 1)
	if r.count >= need {
		return nil
	}
	return &clierr.Error{Kind: clierr.KindUnmet,
		Err: fmt.Errorf("%s: %d of %d matching messages %s", r.o.Match, r.count, need, when)}
}

func describe(err error) string {
	if err == nil {
		return "closed by the broker"
	}
	return err.Error()
}

func (r *runner) countText() string {
	if r.o.Count > 0 {
		return fmt.Sprintf("%d of %d messages", r.count, r.o.Count)
	}
	return fmt.Sprintf("%d messages", r.count)
}

// connect dials and sets up subscriptions. On a reconnect with -c and a
// session the broker kept, the subscriptions are still there and are not
// sent again (that would replay retained messages).
func (r *runner) connect(ctx context.Context, again bool) error {
	o := r.o
	c, err := o.Dial(ctx, r.cfg)
	if err != nil {
		return err
	}
	r.client = c
	if r.cfg.Version == mqttconn.VAuto {
		// Reconnects use the version the broker took.
		r.cfg.Version = c.Info().Version
		if name := o.v5Only(); name != "" && r.cfg.Version != mqttconn.V5 {
			return &clierr.Error{Kind: clierr.KindUsage,
				Err:   fmt.Errorf("%s needs MQTT 5, and the broker speaks MQTT %s only (-V auto fell back to it)", name, r.cfg.Version),
				Hints: []string{"drop " + name + ", or use a broker with MQTT 5"}}
		}
	}
	if again && r.cfg.NoClean && c.Info().SessionPresent {
		return nil
	}
	if len(o.Topics) > 0 {
		if err := r.subscribe(ctx, c, again); err != nil {
			return err
		}
	}
	// After the subscriptions, as mosquitto_sub processes them: -t a/#
	// -U a/# leaves no subscription behind.
	if !again && len(o.Unsubscribe) > 0 {
		if err := c.Unsubscribe(ctx, o.Unsubscribe...); err != nil {
			return fmt.Errorf("unsubscribe %q: %w", o.Unsubscribe, err)
		}
	}
	return nil
}

// subscribe sends the one SUBSCRIBE for -t (and the --retained-only sync
// topic) and checks the broker's reason codes.
func (r *runner) subscribe(ctx context.Context, c mqttconn.Client, again bool) error {
	o := r.o
	subs := make([]mqttconn.Subscription, len(o.Topics))
	for i, t := range o.Topics {
		var q byte
		switch len(o.QoS) {
		case 0:
		case 1:
			q = o.QoS[0]
		default:
			q = o.QoS[i]
		}
		subs[i] = mqttconn.Subscription{Filter: t, QoS: q, NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished,
			RetainHandling: o.RetainHandling, SubscriptionID: o.SubscriptionID}
	}
	sync := r.sentinel != "" && !again
	req := subs
	if sync {
		// In the same SUBSCRIBE, so that no second SUBACK has to get past
		// a backlog of retained messages. No no-local: the echo is the point.
		req = append(subs[:len(subs):len(subs)], mqttconn.Subscription{Filter: r.sentinel, QoS: syncQoS(c)})
	}
	codes, err := c.Subscribe(ctx, req)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for i, code := range codes {
		if code >= 0x80 && i < len(subs) {
			return &clierr.Error{Kind: clierr.KindRejected, Reason: code,
				Op:    fmt.Sprintf("subscribe to %q", subs[i].Filter),
				Err:   fmt.Errorf("refused by the broker: %s (0x%02X)", mqttconn.ReasonName(code), code),
				Hints: subackHints(code, subs[i].Filter)}
		}
	}
	if sync {
		r.syncRetained(c, codes, len(subs))
	}
	return nil
}

// syncRetained publishes one message to the private topic subscribed
// along with the user's filters: the broker queued the retained messages
// for those before it reads this PUBLISH, so its echo means they have all
// been delivered. The PUBACK arrives on r.syncC; if the broker will not
// let us publish or read there, --retained-only falls back to
// mosquitto_sub's rule (stop at the first message without retain) plus a
// quiet period, so that it always ends.
func (r *runner) syncRetained(c mqttconn.Client, codes []byte, n int) {
	if len(codes) <= n || codes[n] >= 0x80 {
		reason := "no reason code"
		if len(codes) > n {
			reason = fmt.Sprintf("%s (0x%02X)", mqttconn.ReasonName(codes[n]), codes[n])
		}
		r.o.IO.Warnf("--retained-only: the broker refused mqtk's sync subscription to %s: %s; ending at the first message without retain, or after %s without messages",
			r.sentinel, reason, syncQuiet)
		r.sentinel = ""
		r.syncC = nil
		r.armQuiet()
		return
	}
	// Asynchronous: a PUBACK waits behind the retained messages, which
	// only the run loop drains.
	syncC := r.syncC
	c.PublishAsync(r.ctx, &mqttconn.Message{Topic: r.sentinel, QoS: syncQoS(c), Payload: []byte("sync")}, func(err error) { syncC <- err })
}

// syncQoS is 1, so that a v5 broker says in its PUBACK when it will not
// take the sync message, unless the broker allows only QoS 0
// [MQTT-3.2.2-11].
func syncQoS(c mqttconn.Client) byte {
	return min(1, c.Info().MaximumQoS)
}

func subackHints(code byte, filter string) []string {
	switch code {
	case 0x87:
		return []string{"the broker's ACL does not let this user read " + filter + ": check the user (-u) or the broker's ACL"}
	case 0x8F:
		return []string{"the broker does not accept this filter; check its wildcards (+ and # must be whole levels)"}
	case 0x9E:
		return []string{"this broker has no shared subscriptions: subscribe without the $share/GROUP/ prefix"}
	case 0xA1:
		return []string{"this broker has no subscription identifiers: drop --subscription-id"}
	case 0xA2:
		return []string{"this broker refuses wildcards: subscribe to exact topics"}
	}
	return nil
}

// sentinelPrefix begins the private topics --retained-only publishes its
// sync message to.
const sentinelPrefix = "mqtk/retained-sync/"

// handle processes one arrival and reports whether an ending condition
// has been met.
func (r *runner) handle(ctx context.Context, m *mqttconn.Message) (bool, error) {
	o := r.o
	if r.sentinel != "" && m.Topic == r.sentinel {
		return true, nil
	}
	if o.RetainedOnly && strings.HasPrefix(m.Topic, sentinelPrefix) {
		// An earlier run's sync message, sent again by a persistent
		// session whose connection ended before the broker read its
		// PUBACK: mqtk's own traffic, and no sign that this run's
		// retained messages are all in.
		return false, nil
	}
	if m.Received.IsZero() {
		m.Received = r.now()
	}
	if o.RetainedOnly && !m.Retain {
		return true, nil
	}
	if o.RetainedOnly {
		if r.shown[m.Topic] {
			return false, nil
		}
		r.shown[m.Topic] = true
	}
	// mosquitto_sub's order: -R and -T come before --remove-retained, so
	// that what the user excluded is neither shown nor cleared (its man
	// page: "Use -T to filter out messages you do not want to be cleared").
	if o.NoRetained && m.Retain {
		return false, nil
	}
	for _, f := range o.FilterOut {
		if topic.Match(f, m.Topic) {
			return false, nil
		}
	}
	if o.RemoveRetained {
		if m.Retain && len(m.Payload) > 0 {
			if o.DryRun {
				o.IO.Infof("would clear the retained message on %s (%d bytes)", m.Topic, len(m.Payload))
			} else if r.client != nil {
				if r.clear == nil {
					r.clear = newClearer(r.ctx)
				}
				r.clear.add(r.client, m.Topic)
				r.cleared[m.Topic] = true
			}
		} else if !m.Retain && len(m.Payload) == 0 && r.cleared[m.Topic] {
			// Our own clearing message coming back: not news.
			delete(r.cleared, m.Topic)
			return false, nil
		}
	}
	if o.Match != nil && !o.Match.Match(m.Payload) {
		return false, nil
	}
	r.count++
	if r.stats != nil {
		r.stats.add(m)
	}
	if !o.Watch {
		r.pr.print(m, m.Received)
	}
	if r.dump != nil {
		if err := r.dump.write(m); err != nil {
			return false, err
		}
	}
	return o.Count > 0 && r.count >= o.Count, nil
}

// finish flushes output, prints --stats, and disconnects. err is what Run
// returns; output errors are reported only when nothing else went wrong.
func (r *runner) finish(err error) error {
	ferr := r.pr.flush()
	if r.stats != nil && r.o.Stats {
		r.stats.render(r.o.IO.Err, r.now(), &r.pr.st, false)
	}
	if r.client != nil {
		// Let a handler blocked on a full r.msgs return first: Disconnect
		// waits until every received message has been acknowledged.
		r.release()
		if r.clear != nil {
			// The clearing messages go out before DISCONNECT: exiting
			// first would leave retained messages behind.
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if cerr := r.clear.wait(cctx); cerr != nil && err == nil {
				err = cerr
			}
			cancel()
		}
		if r.sentinel != "" && r.o.Conn.NoClean {
			// A persistent session would keep the sync subscription
			// after the run, one more random topic each time.
			uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if uerr := r.client.Unsubscribe(uctx, r.sentinel); uerr != nil {
				r.o.IO.Warnf("--retained-only: could not remove mqtk's sync subscription %s from the session: %v", r.sentinel, uerr)
			}
			cancel()
		}
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		derr := r.client.Disconnect(dctx)
		cancel()
		if err == nil && derr != nil && !errors.Is(derr, context.DeadlineExceeded) {
			r.o.IO.Warnf("disconnect: %v", derr)
		}
	}
	if err == nil && ferr != nil {
		return fmt.Errorf("write stdout: %w", ferr)
	}
	return err
}
