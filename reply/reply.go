package reply

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/reqresp"
	"github.com/mqtk/mqtk/internal/topic"
)

// Run subscribes to the request filters and answers every request until
// ctx ends, -C requests are answered, or the connection fails; then it
// drains (requests already received are answered), disconnects and prints
// the summary on stderr.
//
// The returned error says how it ended: nil after -C answers; ctx's error
// when interrupted (exit 130); KindRejected when the broker refused a
// subscription; KindNetwork when the connection was lost. A request that
// fails is the requester's news, not the run's: it does not change the
// exit code.
func Run(ctx context.Context, o *Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	r, err := newRunner(o)
	if err != nil {
		return err
	}
	return r.run(ctx)
}

// runner is the state of one Run.
//
// Concurrency: accept runs on the connection's reader goroutine, the
// workers on their own, the publish callbacks on library goroutines; st
// and the counters are safe for all of them. c and v5 are set before any
// worker starts and never change.
type runner struct {
	o    *Options
	now  func() time.Time
	tmpl *template.Template
	host string

	c  mqttconn.Client
	v5 bool

	// mu orders accept's send on jobs against its close by stop.
	mu     sync.Mutex
	closed bool
	jobs   chan *mqttconn.Message

	seq       atomic.Int64 // requests taken for answering
	busy      atomic.Int64 // requests being handled by a worker
	countDone chan struct{}
	countOnce sync.Once
	pending   sync.WaitGroup // responses handed to PublishAsync, not yet done
	notes     atomic.Int32   // "skipped"/"rejected" notes printed
	errMu     sync.Mutex     // one writer on stderr at a time: workers, reader, callbacks
	st        *stats
}

func newRunner(o *Options) (*runner, error) {
	r := &runner{o: o, now: o.Now, countDone: make(chan struct{}), st: newStats()}
	if r.now == nil {
		r.now = time.Now
	}
	if o.HasMessage && !o.Literal {
		t, err := parseTemplate(o.Message, o.Getenv)
		if err != nil {
			return nil, err
		}
		r.tmpl = t
	}
	if len(o.Exec) > 0 {
		// Found once, before connecting: a typo is a usage error, not a
		// failed answer to every request.
		if _, err := exec.LookPath(o.Exec[0]); err != nil {
			return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "--exec " + o.Exec[0], Err: err,
				Hints: []string{"give a program on $PATH or a path to one; for a shell pipeline use --exec sh -c '...'"}}
		}
	}
	if o.Host != nil {
		r.host, _ = o.Host() // {{.Hostname}} is "" when the system will not say
	}
	r.jobs = make(chan *mqttconn.Message, r.queue())
	return r, nil
}

func (r *runner) queue() int {
	if r.o.Queue > 0 {
		return r.o.Queue
	}
	return DefaultQueue
}

func (r *runner) concurrency() int { return max(r.o.Concurrency, 1) }

func (r *runner) run(ctx context.Context) error {
	o := r.o
	cfg := o.Conn
	cfg.OnMessage = r.accept
	c, err := o.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	r.c = c
	r.v5 = c.Info().Version == mqttconn.V5
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Disconnect(dctx)
	}()

	// Responses outlive an interrupt: a request received is answered
	// while draining, so publishing must not end with ctx.
	pctx := context.WithoutCancel(ctx)
	var workers sync.WaitGroup
	for range r.concurrency() {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for m := range r.jobs {
				r.busy.Add(1)
				r.handle(pctx, m)
				r.busy.Add(-1)
			}
		}()
	}
	finish := func(end error) error {
		r.stop()
		if n := len(r.jobs) + int(r.busy.Load()); n > 0 && ctx.Err() != nil {
			r.infof("finishing the %d requests already received; Ctrl-C again to quit at once", n)
		}
		workers.Wait()
		r.pending.Wait()
		r.infof("%s", r.st.summary())
		return end
	}

	filters := o.filters()
	subs := make([]mqttconn.Subscription, len(filters))
	for i, f := range filters {
		// No Local keeps our own responses from coming back when a
		// filter covers the response topics. It is a protocol error on a
		// shared subscription [MQTT-3.8.3-4], and 3.1.1 has no such
		// option: there, and for other responders' answers, isResponse
		// tells responses from requests.
		subs[i] = mqttconn.Subscription{Filter: f, QoS: o.QoS, NoLocal: r.v5 && o.Share == ""}
	}
	codes, err := c.Subscribe(ctx, subs)
	if err != nil {
		return finish(fmt.Errorf("subscribe to %s: %w", strings.Join(filters, ", "), err))
	}
	for i, code := range codes {
		if code >= 0x80 && i < len(filters) {
			return finish(&clierr.Error{Kind: clierr.KindRejected, Reason: code, Op: fmt.Sprintf("subscribe to %q", filters[i]),
				Err: fmt.Errorf("refused by the broker: %s (0x%02X)", mqttconn.ReasonName(code), code)})
		}
	}
	conv := "each request's response topic"
	if !r.v5 {
		conv = "request topic + " + reqresp.Suffix(o.ResponseSuffix)
	}
	if o.ResponseTopic != "" {
		conv = o.ResponseTopic
	}
	r.infof("answering requests on %s (responses to %s)", strings.Join(filters, ", "), conv)

	var end error
	select {
	case <-ctx.Done():
		end = ctx.Err()
	case <-r.countDone:
	case <-c.Done():
		end = &clierr.Error{Kind: clierr.KindNetwork, Op: "connection lost", Err: c.Err()}
	}
	if end == nil || ctx.Err() != nil {
		// Leave the group before draining, so that the broker sends new
		// requests to the responders that stay.
		uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.Unsubscribe(uctx, filters...)
		cancel()
	}
	return finish(end)
}

// accept queues one incoming message. It runs on the connection's reader
// and never blocks it: a full queue refuses the request (the requester
// hears nothing and times out), since stalling the reader would stall
// acknowledgements and keepalive for every request.
func (r *runner) accept(m *mqttconn.Message) {
	if r.o.isResponse(m.Topic) {
		// An answer, ours or another responder's, that a filter covers:
		// not a request, and no room in the queue for it.
		r.st.add(&r.st.ignored)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.st.add(&r.st.rejected)
		return
	}
	select {
	case r.jobs <- m:
	default:
		r.st.add(&r.st.rejected)
		r.note("queue full (--queue %d): dropped a request on %s; raise --concurrency or --queue", r.queue(), m.Topic)
	}
}

// stop ends accepting; the workers finish what is queued.
func (r *runner) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.jobs)
	}
}

// warnf and infof serialise the runner's lines on stderr: they come from
// the workers, the connection's reader and publish callbacks at once.
func (r *runner) warnf(format string, args ...any) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	r.o.IO.Warnf(format, args...)
}

func (r *runner) infof(format string, args ...any) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	r.o.IO.Infof(format, args...)
}

// maxNotes bounds the per-request notes on stderr; the summary counts all.
const maxNotes = 5

func (r *runner) note(format string, args ...any) {
	switch n := r.notes.Add(1); {
	case n <= maxNotes:
		r.warnf(format, args...)
	case n == maxNotes+1:
		r.warnf("more such notes are left out; the summary at exit counts every request")
	}
}

// target is where the response to m goes, or "" when it cannot be
// answered.
func (r *runner) target(m *mqttconn.Message) string {
	switch {
	case m.ResponseTopic != "":
		return m.ResponseTopic
	case r.o.ResponseTopic != "":
		return r.o.ResponseTopic
	case !r.v5:
		return reqresp.Topic(m.Topic, r.o.ResponseSuffix)
	}
	return ""
}

// outcome is what handling one request produced.
type outcome struct {
	payload []byte
	stderr  []byte // --exec only
	code    int    // --exec only: exit status, -1 when there is none
	failure string // why the request failed; "" when it did not
}

func (r *runner) handle(ctx context.Context, m *mqttconn.Message) {
	o := r.o
	start := m.Received
	if start.IsZero() {
		start = r.now()
	}
	to := r.target(m)
	if to == "" {
		r.st.add(&r.st.skipped)
		r.note("skipped a request on %s: it has no response topic (MQTT 5 requesters name one; -e TOPIC answers such requests there)", m.Topic)
		return
	}
	if err := topic.ValidateName(to); err != nil {
		r.st.add(&r.st.skipped)
		r.note("skipped a request on %s: cannot answer on %q: %v", m.Topic, to, err)
		return
	}
	seq := int(r.seq.Add(1))
	if o.Count > 0 && seq > o.Count {
		// Received after -C was reached: not ours to answer.
		r.st.add(&r.st.rejected)
		return
	}
	if o.Count > 0 && seq == o.Count {
		defer r.countOnce.Do(func() { close(r.countDone) })
	}

	var out outcome
	switch {
	case len(o.Exec) > 0:
		out = r.exec(ctx, m, seq, to)
	case r.tmpl != nil:
		p, err := render(r.tmpl, newTmplData(seq, r.now(), r.host, r.c.Info().ClientID, to, m))
		out = outcome{payload: p}
		if err != nil {
			out.failure = err.Error()
		}
	default:
		out = outcome{payload: []byte(o.Message)}
	}
	if len(out.stderr) > 0 {
		r.errMu.Lock()
		w := o.Stderr
		if w == nil {
			w = o.IO.Err
		}
		_, _ = w.Write(out.stderr)
		r.errMu.Unlock()
	}
	resp := r.response(m, to, &out)
	took := r.now().Sub(start)
	r.st.handled(took)
	if out.failure != "" {
		r.warnf("request %d on %s failed: %s", seq, m.Topic, out.failure)
	}
	if o.Verbose {
		status := "ok"
		if out.failure != "" {
			status = "failed"
		}
		r.infof("request %d on %s: %s, answered on %s in %.3f ms", seq, m.Topic, status, resp.Topic, float64(took)/float64(time.Millisecond))
	}
	failed := out.failure != ""
	r.pending.Add(1)
	// Asynchronous, so that with --concurrency 1 one request's PUBACK does
	// not hold up the next; messages queued from one worker keep their
	// order on the wire.
	r.c.PublishAsync(ctx, resp, func(err error) {
		defer r.pending.Done()
		if err != nil {
			r.st.add(&r.st.failed)
			r.warnf("request %d on %s: publish the response to %s: %v", seq, m.Topic, resp.Topic, err)
			return
		}
		if failed {
			r.st.add(&r.st.failed)
		} else {
			r.st.add(&r.st.served)
		}
	})
}

// response builds the message that answers m on to.
func (r *runner) response(m *mqttconn.Message, to string, out *outcome) *mqttconn.Message {
	o := r.o
	resp := o.Response // -D publish properties
	resp.UserProperties = append([]mqttconn.UserProperty(nil), o.Response.UserProperties...)
	resp.Topic, resp.QoS, resp.Payload = to, o.QoS, out.payload
	if !r.v5 {
		// MQTT 3.1.1 carries no properties: the payload is the only
		// place a requester can read why its request failed.
		resp = mqttconn.Message{Topic: to, QoS: o.QoS, Payload: out.payload}
		if out.failure != "" {
			if o.ErrorTopic != "" {
				resp.Topic, resp.Payload = o.ErrorTopic, failureText(m.Topic, out)
			} else {
				resp.Payload = []byte("mqtk reply: " + out.failure)
			}
		}
		return &resp
	}
	// The Correlation Data goes back unaltered, so that the requester can
	// tell which request this answers (MQTT 5 section 4.10.2).
	resp.CorrelationData = m.CorrelationData
	if len(o.Exec) > 0 {
		resp.UserProperties = append(resp.UserProperties, mqttconn.UserProperty{Key: PropExitCode, Value: fmt.Sprint(out.code)})
	}
	if out.failure != "" {
		resp.UserProperties = append(resp.UserProperties, mqttconn.UserProperty{Key: PropError, Value: out.failure})
		if o.ErrorTopic != "" {
			// The error report names the request and keeps its response
			// topic, so that whoever reads it can still answer.
			resp.Topic, resp.ResponseTopic, resp.Payload = o.ErrorTopic, to, failureText(m.Topic, out)
			resp.UserProperties = append(resp.UserProperties, mqttconn.UserProperty{Key: PropRequestTopic, Value: m.Topic})
		}
	}
	return &resp
}

// failureText is the payload of an --error-topic report: the command's
// stderr when it wrote any, else the reason.
func failureText(reqTopic string, out *outcome) []byte {
	if len(out.stderr) > 0 {
		return out.stderr
	}
	return []byte(fmt.Sprintf("request on %s: %s", reqTopic, out.failure))
}
