package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

// runner holds one run's shared, read-mostly state. The clock origin t0
// is one time.Time for the whole process, so publishers and subscribers
// in pubsub mode compare monotonic readings from a single clock.
type runner struct {
	o       *Options
	cfg     mqttconn.Config
	dial    mqttconn.DialFunc
	t0      time.Time
	idBase  string
	wall    bool // write (pub) or expect (sub) wall-clock timestamps
	brokerU string

	// Run-relative times, fixed before publishing starts.
	measureStart time.Duration
	end          time.Duration // 0: no time limit

	pubs []*publisher
	subs []*subscriber

	// connRate is this process's share of --conn-rate, which is a total
	// across shards like -c.
	connRate float64
}

func (r *runner) since() time.Duration { return time.Since(r.t0) }

// stamp turns a run-relative time into what the header carries.
func (r *runner) stamp(d time.Duration) int64 {
	if r.wall {
		return r.t0.UnixNano() + int64(d)
	}
	return int64(d)
}

// Measure runs the benchmark and returns its report without rendering it.
// On ctx cancellation it stops the load, still drains and reports, and
// returns the report together with ctx's error.
func Measure(ctx context.Context, o *Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	r := &runner{o: o, dial: o.Dial, cfg: o.Conn}
	if r.dial == nil {
		r.dial = mqttconn.Dial
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
	if o.Inflight == 0 {
		o.Inflight = 1
	}
	var warnings []string
	lim := osFileLimit()
	if o.fileLimit != nil {
		lim = *o.fileLimit
	}
	// Only this shard's connections count: the others are other processes.
	conns := o.connsInProcess()
	need := filesNeeded(conns, o.Embedded)
	if w, err := ensureFiles(lim, need); err != nil {
		return nil, o.fileLimitError(err, conns, need)
	} else if w != "" {
		warnings = append(warnings, w)
	}
	readCPU := o.readCPU
	if readCPU == nil {
		readCPU = osReadCPU
	}
	broker := "external"
	if o.Embedded {
		start := o.StartBroker
		if start == nil {
			start = startEmbedded
		}
		u, stop, err := start(ctx)
		if err != nil {
			return nil, fmt.Errorf("start the in-process broker: %w", err)
		}
		defer stop()
		cfg := o.Conn
		cfg.URL, cfg.Host, cfg.Port, cfg.SocketPath, cfg.Scheme = u, "", 0, "", ""
		cfg.TLS = mqttconn.TLS{}
		if err := cfg.Resolve(); err != nil {
			return nil, err
		}
		r.cfg = cfg
		broker = "in-process"
		o.IO.Infof("no broker given (-L/--url, -h): benchmarking mqtk's own broker in-process at %s", u)
	}
	// mqtk's own client: the library clients cost the generator more CPU
	// per message than the broker under test spends.
	r.cfg.Native = true
	r.brokerU = r.cfg.String()
	if total := o.connsInTotal(); total > 0 {
		r.connRate = o.ConnRate * float64(conns) / float64(total)
	}
	// One process, one clock: pubsub stamps monotonic time since t0. Across
	// processes (pub/sub on different hosts, or shards whose subscribers
	// receive other shards' messages) only the wall clock is shared.
	r.wall = o.Mode == ModePub || o.Mode == ModeSub || o.Shards > 1
	var tok [3]byte
	_, _ = rand.Read(tok[:])
	prefix := r.cfg.IDPrefix
	if prefix == "" {
		prefix = r.cfg.ClientID
	}
	if prefix == "" {
		prefix = "mqtk-bench-"
	}
	r.idBase = prefix + hex.EncodeToString(tok[:]) + "-"
	r.t0 = time.Now()
	cpu0 := readCPU()

	rep := &Report{Schema: Schema, Mode: o.Mode, Shards: 1, Config: o.config(r.cfg)}
	rep.Env = Env{BrokerURL: r.brokerU, Broker: broker, GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
		GoVersion: runtime.Version(), Version: o.Version}
	if o.Shards > 1 {
		rep.Env.Shard = fmt.Sprintf("%d/%d", o.Shard, o.Shards)
	}
	rep.LoadModel = "closed-loop"
	if o.Rate > 0 {
		rep.LoadModel = "scheduled"
	}
	if o.Mode == ModeConn || o.Mode == ModeSub {
		rep.LoadModel = "none"
	}

	var err error
	if o.Mode == ModeConn {
		err = r.runConn(ctx, rep)
	} else {
		err = r.runMessages(ctx, rep)
	}
	if err != nil && rep.Started.IsZero() {
		return nil, err // failed before measuring anything
	}
	cpu, wallD := readCPU().sub(cpu0)
	wall := wallD.Seconds()
	rep.Env.CPUUser, rep.Env.CPUSys = round3(cpu.user), round3(cpu.sys)
	if wall > 0 {
		rep.Env.CPUPercent = round3((cpu.user + cpu.sys) / wall / float64(rep.Env.GOMAXPROCS) * 100)
	}
	if rep.Publish != nil && rep.Publish.Total > 0 {
		rep.Env.CPUPerMsgUS = round3((cpu.user + cpu.sys) / float64(rep.Publish.Total) * 1e6)
	}
	if rep.Env.CPUPercent > 90 {
		w := fmt.Sprintf("this process used %.0f%% of its %d CPUs: the load generator, not the broker, may be the limit", rep.Env.CPUPercent, rep.Env.GOMAXPROCS)
		if broker == "in-process" {
			w += " (the in-process broker shares those CPUs)"
		}
		warnings = append(warnings, w)
	}
	rep.Warnings = append(warnings, rep.Warnings...)
	rep.summarize()
	return rep, err
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func (o *Options) config(cfg mqttconn.Config) Config {
	c := Config{Clients: o.Clients, Subscribers: o.Subscribers, Topic: o.Topic, Topics: o.Topics, QoS: o.QoS,
		Size: o.Size, Retain: o.Retain, Rate: o.Rate, Inflight: o.Inflight, Count: o.Count,
		Duration: o.Duration.String(), Warmup: o.Warmup.String(), ConnRate: o.ConnRate,
		ProtocolVer: cfg.Version.String(), MaxLossPct: o.MaxLossPct, RatePerClient: o.RatePerClient,
		Interval: o.Interval.String(), DrainTimeout: o.DrainTimeout.String()}
	if o.Rate > 0 {
		c.Inflight = 0
		if o.RatePerClient {
			c.Rate = o.Rate * float64(o.Clients)
		}
	}
	if o.Count > 0 && o.Duration <= 0 {
		c.Duration = ""
	}
	if o.MaxP99 > 0 {
		c.MaxP99 = o.MaxP99.String()
	}
	return c
}

// connResult is one connection attempt.
type connResult struct {
	c   mqttconn.Client
	lat time.Duration
	err error
}

// connectAll dials every config, paced by --conn-rate and at most 64 at
// a time, and records each attempt in its own slot (no shared state).
func (r *runner) connectAll(ctx context.Context, cfgs []mqttconn.Config) ([]connResult, time.Duration) {
	res := make([]connResult, len(cfgs))
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	start := time.Now()
	var gap time.Duration
	if r.connRate > 0 {
		gap = time.Duration(float64(time.Second) / r.connRate)
	}
	for i := range cfgs {
		if gap > 0 {
			if d := time.Until(start.Add(time.Duration(i) * gap)); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		if ctx.Err() != nil {
			res[i].err = ctx.Err()
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			t := time.Now()
			c, err := r.dial(ctx, cfgs[i])
			res[i] = connResult{c: c, lat: time.Since(t), err: err}
		}(i)
	}
	wg.Wait()
	return res, time.Since(start)
}

// recordConnects fills rep.Connect from attempts.
func recordConnects(rep *Report, res []connResult, ramp time.Duration) {
	h := newHist()
	cn := &rep.Connect
	for _, x := range res {
		cn.Attempted++
		if x.err != nil {
			cn.Failed++
			if cn.Failures == nil {
				cn.Failures = map[string]int{}
			}
			cn.Failures[failureReason(x.err)]++
			continue
		}
		cn.OK++
		record(h, int64(x.lat))
	}
	cn.RampS = round3(ramp.Seconds())
	if ramp > 0 {
		cn.PerSecond = round3(float64(cn.OK) / ramp.Seconds())
	}
	rep.Hists.Connect = mergeHists(rep.Hists.Connect, h)
}

func failureReason(err error) string {
	switch clierr.KindOf(err) {
	case clierr.KindNetwork:
		return "network"
	case clierr.KindTLS:
		return "tls"
	case clierr.KindRefused:
		return "refused"
	case clierr.KindTimeout:
		return "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "other"
}

func firstErr(res []connResult) error {
	for _, x := range res {
		if x.err != nil {
			return x.err
		}
	}
	return nil
}

func disconnectAll(res []connResult) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, x := range res {
		if x.c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(c mqttconn.Client) {
			defer wg.Done()
			defer func() { <-sem }()
			_ = c.Disconnect(ctx)
		}(x.c)
	}
	wg.Wait()
}

// runConn opens --clients connections, holds them for --duration and
// reports how they went.
func (r *runner) runConn(ctx context.Context, rep *Report) error {
	o := r.o
	lo, hi := shardRange(o.Clients, o.Shard, o.Shards)
	cfgs := make([]mqttconn.Config, 0, hi-lo)
	for i := lo; i < hi; i++ {
		c := r.cfg
		c.ClientID, c.IDPrefix = r.idBase+"c"+fmt.Sprint(i), ""
		cfgs = append(cfgs, c)
	}
	rep.Started = time.Now()
	stopProgress := r.progress(ctx, func() string {
		return fmt.Sprintf("connecting… %s", time.Since(rep.Started).Truncate(time.Second))
	})
	res, ramp := r.connectAll(ctx, cfgs)
	stopProgress()
	recordConnects(rep, res, ramp)
	defer disconnectAll(res)
	if rep.Connect.OK == 0 {
		return firstErr(res)
	}
	hold := o.Duration
	holdStart := time.Now()
	stopProgress = r.progress(ctx, func() string {
		return fmt.Sprintf("holding %s connections %s/%s", fmtCount(int64(rep.Connect.OK)), time.Since(holdStart).Truncate(time.Second), hold)
	})
	select {
	case <-time.After(hold):
	case <-ctx.Done():
	}
	stopProgress()
	dropped := 0
	for _, x := range res {
		if x.c == nil {
			continue
		}
		select {
		case <-x.c.Done():
			dropped++
		default:
		}
	}
	if dropped > 0 {
		if rep.Connect.Failures == nil {
			rep.Connect.Failures = map[string]int{}
		}
		rep.Connect.Failures["dropped while held"] = dropped
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d of %d connections dropped while held", dropped, rep.Connect.OK))
	}
	rep.Ended = time.Now()
	rep.Measured = round3(rep.Ended.Sub(rep.Started).Seconds())
	rep.Intervals = []Interval{}
	return ctx.Err()
}

// progress prints line() over itself on stderr once per interval while
// it is a terminal; the returned func stops it and clears the line.
func (r *runner) progress(ctx context.Context, line func() string) func() {
	if !r.o.Progress || r.o.IO == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	st := r.o.IO.Err.Style().Faint(true)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.o.Interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintf(r.o.IO.Err, "\r\033[K%s", st.Render("mqtk: "+line()))
			case <-done:
				fmt.Fprint(r.o.IO.Err, "\r\033[K")
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// newIvHist is the cheaper histogram for one interval: 2 significant
// digits are plenty for a per-second p50/p99 row.
func newIvHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, 2)
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Run measures, writes the report to o.IO.Out in o.Format and checks the
// --max-loss and --max-p99 thresholds (KindUnmet when one is exceeded).
func Run(ctx context.Context, o *Options) error {
	if o.Format == "" {
		o.Format = "text"
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Rate == 0 && (o.Mode == ModePubSub || o.Mode == ModePub) {
		o.IO.Infof("closed loop: %d publishers, %d in flight each; throughput is then about concurrency ÷ latency (use --rate for a scheduled run)", o.Clients, max(o.Inflight, 1))
	}
	rep, err := Measure(ctx, o)
	if rep == nil {
		return err
	}
	if o.Format == "csv" {
		for _, w := range rep.Warnings {
			o.IO.Warnf("%s", w)
		}
	}
	if werr := Write(o.IO.Out, rep, o.Format); werr != nil {
		return fmt.Errorf("write report: %w", werr)
	}
	if err != nil {
		return err
	}
	return Check(rep, o.MaxLossPct, o.MaxP99)
}

// Write renders rep in format: text, json or csv.
func Write(w io.Writer, rep *Report, format string) error {
	switch format {
	case "json":
		return WriteJSON(w, rep)
	case "csv":
		return WriteCSV(w, rep)
	}
	return WriteText(w, rep)
}

// Check applies the CI thresholds to a report.
func Check(rep *Report, maxLossPct *float64, maxP99 time.Duration) error {
	if maxLossPct != nil && rep.Receive != nil && rep.Receive.LossPct > *maxLossPct {
		return &clierr.Error{Kind: clierr.KindUnmet, Err: fmt.Errorf("loss %.3f%% (%d of %d) exceeds --max-loss %g%%",
			rep.Receive.LossPct, rep.Receive.Lost, rep.Receive.Expected, *maxLossPct)}
	}
	if maxP99 > 0 {
		p, what, ok := rep.P99()
		if !ok {
			return &clierr.Error{Kind: clierr.KindUnmet, Err: fmt.Errorf("--max-p99 %s: no latency was measured", maxP99)}
		}
		if p > maxP99 {
			return &clierr.Error{Kind: clierr.KindUnmet, Err: fmt.Errorf("%s p99 %s exceeds --max-p99 %s", what, p, maxP99)}
		}
	}
	return nil
}
