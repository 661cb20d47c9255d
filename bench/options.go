// Package bench measures an MQTT broker honestly: closed-loop or scheduled
// (open-loop) load, end-to-end latency from a payload header, publish-to-ack
// latency, and loss, duplicate and reorder accounting, with HDR histograms
// that merge exactly across goroutines, processes and machines.
//
// Measuring (run.go), statistics (stats.go) and rendering (report.go) are
// kept apart so that the renderers can be tested on fixed inputs.
package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/topic"
	"github.com/mqtk/mqtk/internal/ui"
)

// Modes.
const (
	ModePubSub = "pubsub"
	ModePub    = "pub"
	ModeSub    = "sub"
	ModeConn   = "conn"
)

// Options configure one run. cmd/mqtk fills them from flags.
type Options struct {
	Mode string

	// Conn is the resolved connection config; it is cloned per client with
	// its own ClientID and OnMessage. Ignored when Embedded is set.
	Conn mqttconn.Config
	// Embedded starts the project's broker in-process on 127.0.0.1:0 and
	// benchmarks that (the default when no broker was named).
	Embedded bool

	Clients     int    // publishers (pubsub, pub) or connections (conn)
	Subscribers int    // pubsub, sub
	Topic       string // pattern: %i client index, %c client id, %t topic index
	Topics      int    // how many values %t takes
	QoS         byte
	Size        int // payload bytes, header included
	Retain      bool

	Rate          float64 // messages/s; 0 = closed loop
	RatePerClient bool    // Rate is per publisher rather than in total
	Inflight      int     // closed loop: messages in flight per publisher

	Count    int64         // total messages across publishers (sub: to receive); 0 = use Duration
	Duration time.Duration // measured phase (conn: how long to hold)
	Warmup   time.Duration // before the measured phase; sent but not measured (pub, pubsub)
	// ConnRate is connections/s during the ramp, in total across shards
	// like -c and --rate: each shard opens its share of the connections at
	// its share of the rate. 0 = as fast as possible.
	ConnRate float64

	Interval     time.Duration // progress and CSV interval; default 1s
	DrainTimeout time.Duration // wait for in-flight deliveries at the end; default 5s

	MaxLossPct *float64      // --max-loss: fail (KindUnmet) above this loss, in percent
	MaxP99     time.Duration // --max-p99: fail above this p99; 0 = no check

	Shard, Shards int // --shard I/N: this process is shard I of N

	Format   string // text, json or csv
	Progress bool   // live progress line on stderr (set when it is a terminal)
	Version  string // mqtk version, recorded in the report

	IO *ui.Streams

	// Dial connects one client; nil means mqttconn.Dial. Tests wrap it to
	// inject faults.
	Dial mqttconn.DialFunc
	// StartBroker starts the in-process broker for Embedded and returns its
	// URL and a stop function; nil means the project's broker package.
	StartBroker func(ctx context.Context) (url string, stop func() error, err error)
	// OnReady, when set, is called once every client is connected and
	// subscribed, just before the load starts: a hook for orchestration
	// and for tests that start a 'bench pub' only once 'bench sub' listens.
	OnReady func()

	// Seams for tests; nil means the real thing.
	readCPU   func() cpuTimes // this process's CPU time, with a wall-clock reading
	fileLimit *fileLimiter    // getrlimit/setrlimit for RLIMIT_NOFILE
}

// Validate rejects nonsense combinations with a message that names the
// cause and the fix. It does not touch the network.
func (o *Options) Validate() error {
	switch o.Mode {
	case ModePubSub, ModePub, ModeSub, ModeConn:
	default:
		return clierr.Usagef("unknown bench mode %q", o.Mode).Hintf("use pubsub, pub, sub or conn")
	}
	if o.Clients < 0 || o.Subscribers < 0 {
		return clierr.Usagef("--clients and --subscribers must not be negative")
	}
	switch o.Mode {
	case ModePubSub:
		if o.Clients < 1 || o.Subscribers < 1 {
			return clierr.Usagef("bench pubsub needs at least one publisher (-c) and one subscriber (--subscribers)").Hintf("use 'bench pub' or 'bench sub' for one side only")
		}
	case ModePub, ModeConn:
		if o.Clients < 1 {
			return clierr.Usagef("bench %s needs -c/--clients of at least 1", o.Mode)
		}
	case ModeSub:
		if o.Subscribers < 1 {
			return clierr.Usagef("bench sub needs --subscribers of at least 1")
		}
	}
	if o.QoS > 2 {
		return clierr.Usagef("-q/--qos %d out of range", o.QoS).Hintf("use 0, 1 or 2")
	}
	if o.Size < HeaderSize {
		return clierr.Usagef("--size %d is smaller than the %d-byte bench header (timestamps, publisher id, sequence)", o.Size, HeaderSize).Hintf("use --size %d or more", HeaderSize)
	}
	if o.Size > 256<<20 {
		return clierr.Usagef("--size %d exceeds MQTT's 256 MiB maximum payload", o.Size)
	}
	if o.Topic == "" {
		return clierr.Usagef("-t/--topic must not be empty")
	}
	if strings.ContainsAny(o.Topic, "+#") {
		return clierr.Usagef("-t/--topic %q is a pattern for publishing and must not hold wildcards", o.Topic).Hintf("use %%i, %%c and %%t for per-client and per-topic levels")
	}
	// The rest of MQTT's rules for a topic name (UTF-8, no NUL, length)
	// hold for the pattern as for every topic it expands to.
	if err := topic.ValidateName(o.Topic); err != nil {
		return clierr.Usagef("-t/--topic: %v", err)
	}
	if err := checkPlaceholders(o.Topic); err != nil {
		return err
	}
	if o.Topics < 1 {
		return clierr.Usagef("--topics must be at least 1")
	}
	if o.Topics > 1 && !strings.Contains(o.Topic, "%t") {
		return clierr.Usagef("--topics %d has no effect: the topic pattern %q has no %%t", o.Topics, o.Topic)
	}
	if math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		return clierr.Usagef("--rate %g is not a number of messages per second", o.Rate).Hintf("give a finite rate, or 0 for closed loop")
	}
	if math.IsNaN(o.ConnRate) || math.IsInf(o.ConnRate, 0) {
		return clierr.Usagef("--conn-rate %g is not a number of connections per second", o.ConnRate).Hintf("give a finite rate, or 0 for as fast as possible")
	}
	if o.Rate < 0 {
		return clierr.Usagef("--rate must not be negative").Hintf("use 0 for closed-loop maximum throughput")
	}
	if o.Rate > 0 && o.Inflight > 0 {
		return &clierr.Error{Kind: clierr.KindUsage, Err: errString("--rate and --inflight do not go together: a scheduled run sends on time whatever is in flight, a closed-loop run (--rate 0) keeps --inflight messages outstanding"),
			Hints: []string{"drop --inflight for a scheduled run, or use --rate 0 --inflight N for maximum throughput"}}
	}
	if o.Rate == 0 && o.RatePerClient {
		return clierr.Usagef("--rate-per-client needs --rate above 0")
	}
	if o.Inflight < 0 || o.Inflight > 65535 {
		return clierr.Usagef("--inflight %d out of range 1..65535", o.Inflight)
	}
	if o.Count < 0 {
		return clierr.Usagef("-n/--count must not be negative")
	}
	if o.Count == 0 && o.Duration <= 0 {
		return clierr.Usagef("neither -n/--count nor a positive -d/--duration ends the run").Hintf("give -n/--count or a positive -d/--duration")
	}
	if o.Warmup < 0 || o.ConnRate < 0 {
		return clierr.Usagef("--warmup and --conn-rate must not be negative")
	}
	if o.Mode == ModeSub && o.Warmup > 0 {
		return &clierr.Error{Kind: clierr.KindUsage, Err: errString("--warmup has no effect in bench sub: the publisher marks its warm-up messages and bench sub leaves them out"),
			Hints: []string{"give --warmup to the 'mqtk bench pub' that sends the messages"}}
	}
	if o.Mode == ModePubSub || o.Mode == ModePub {
		if o.Count > 0 && o.Count < int64(o.Clients) {
			return clierr.Usagef("-n/--count %d is fewer than one message per publisher (-c %d)", o.Count, o.Clients)
		}
	}
	if o.MaxLossPct != nil {
		if math.IsNaN(*o.MaxLossPct) || *o.MaxLossPct < 0 || *o.MaxLossPct > 100 {
			return clierr.Usagef("--max-loss %g out of range 0..100 (percent)", *o.MaxLossPct)
		}
		if o.Mode == ModePub || o.Mode == ModeConn {
			return clierr.Usagef("--max-loss needs subscribers").Hintf("use it with bench pubsub or bench sub")
		}
		if o.QoS == 0 && *o.MaxLossPct == 0 {
			return &clierr.Error{Kind: clierr.KindUsage, Err: errString("--max-loss 0 with QoS 0 asks for a guarantee QoS 0 does not give: the broker may drop QoS 0 messages for a slow subscriber"),
				Hints: []string{"use -q 1 for a zero-loss check, or allow some loss, e.g. --max-loss 0.1"}}
		}
	}
	if o.MaxP99 < 0 {
		return clierr.Usagef("--max-p99 must not be negative")
	}
	if o.Shards < 1 || o.Shard < 0 || o.Shard >= o.Shards {
		return clierr.Usagef("--shard %d/%d out of range", o.Shard, o.Shards).Hintf("write I/N with 0 <= I < N")
	}
	if o.Shards > 1 {
		if o.Embedded {
			return clierr.Usagef("--shard splits one benchmark across processes, which need a shared broker").Hintf("give it with -L/--url or -h")
		}
		if o.Clients > 0 && o.Clients < o.Shards && o.Mode != ModeSub {
			return clierr.Usagef("--shard %d/%d with -c %d leaves some shards without clients", o.Shard, o.Shards, o.Clients).Hintf("give at least one client per shard")
		}
		if (o.Mode == ModePubSub || o.Mode == ModeSub) && o.Subscribers < o.Shards {
			return clierr.Usagef("--shard %d/%d with --subscribers %d leaves some shards without subscribers: --subscribers is the total across shards", o.Shard, o.Shards, o.Subscribers).Hintf("give --subscribers of at least %d", o.Shards)
		}
	}
	if o.Embedded {
		if flag := tlsFlag(o.Conn.TLS); flag != "" {
			return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("%s has no effect on the in-process broker, which listens on plain TCP on 127.0.0.1", flag),
				Hints: []string{"name the TLS broker to benchmark with -L, e.g. -L mqtts://HOST:8883 " + flag + " …", "or drop " + flag + " to benchmark mqtk's own broker in-process"}}
		}
	}
	switch o.Format {
	case "", "text", "json", "csv":
	default:
		return clierr.Usagef("unknown --format %q", o.Format).Hintf("use text, json or csv")
	}
	return nil
}

// tlsFlag names the first TLS setting in t, as its flag, or "".
func tlsFlag(t mqttconn.TLS) string {
	switch {
	case t.CAFile != "":
		return "--cafile"
	case t.CAPath != "":
		return "--capath"
	case t.CertFile != "":
		return "--cert"
	case t.KeyFile != "":
		return "--key"
	case t.Insecure:
		return "--insecure"
	case t.Enabled:
		return "--tls"
	case t.MinVersion != "":
		return "--tls-version"
	case t.ServerName != "":
		return "--sni"
	}
	return ""
}

// checkPlaceholders refuses a % in the topic pattern that is not one of
// %i, %c or %t: it would be published literally, which is never meant.
func checkPlaceholders(pattern string) error {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '%' {
			continue
		}
		if i+1 < len(pattern) && strings.IndexByte("ict", pattern[i+1]) >= 0 {
			i++
			continue
		}
		ph := "%"
		if i+1 < len(pattern) {
			ph = pattern[i : i+2]
		}
		return clierr.Usagef("-t/--topic %q: unknown placeholder %q", pattern, ph).Hintf("use %%i (client index), %%c (client id) or %%t (topic index)")
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

// span of indexes [lo, hi) this shard owns out of n.
func shardRange(n, shard, shards int) (lo, hi int) {
	return n * shard / shards, n * (shard + 1) / shards
}

// filterFor turns a publishing pattern into the filter subscribers use:
// every level holding a placeholder becomes "+", so each subscriber gets
// every publisher's messages and the expected count is sent × subscribers.
// The pattern passed topic.ValidateName, so the result is a valid filter
// that topic.Match would match with every expansion (a test checks both).
func filterFor(pattern string) string {
	levels := strings.Split(pattern, "/")
	for i, l := range levels {
		if strings.Contains(l, "%") {
			levels[i] = "+"
		}
	}
	return strings.Join(levels, "/")
}

// expandTopic fills the pattern for one publisher and topic index.
func expandTopic(pattern string, index int, id string, topic int) string {
	r := strings.NewReplacer("%i", strconv.Itoa(index), "%c", id, "%t", strconv.Itoa(topic))
	return r.Replace(pattern)
}
