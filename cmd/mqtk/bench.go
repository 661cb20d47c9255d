package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/bench"
	"github.com/mqtk/mqtk/internal/clierr"
)

// benchFlags are the load-shape flags every bench mode shares.
type benchFlags struct {
	conn *connFlags
	o    bench.Options

	qos      int
	count    int64
	maxLoss  string
	shard    string
	format   string
	duration time.Duration
}

func addBenchFlags(cmd *cobra.Command, a *app, mode string) *benchFlags {
	f := &benchFlags{o: bench.Options{Mode: mode}}
	// bench keeps -c for clients and -d for duration, as emqtt-bench and
	// MQTTX bench do; --no-clean and --debug keep their long forms.
	f.conn = addConnFlags(cmd, a, "c", "d")
	fs := cmd.Flags()
	o := &f.o
	fs.IntVarP(&o.Clients, "clients", "c", 10, "publishers (bench conn: connections), in total across shards")
	fs.IntVar(&o.Subscribers, "subscribers", 1, "subscribers, each receiving every publisher's messages")
	fs.StringVarP(&o.Topic, "topic", "t", "mqtk/bench/%i", "topic pattern: %i client index, %c client id, %t topic index")
	fs.IntVar(&o.Topics, "topics", 1, "number of topics each publisher cycles through (%t)")
	fs.IntVarP(&f.qos, "qos", "q", 1, "QoS of publishes and subscriptions: 0, 1 or 2")
	fs.IntVarP(&o.Size, "size", "s", 100, fmt.Sprintf("payload bytes, including the %d-byte bench header", bench.HeaderSize))
	fs.BoolVarP(&o.Retain, "retain", "r", false, "publish with the retain flag")
	fs.Float64Var(&o.Rate, "rate", 0, "scheduled (open-loop) run at this many messages/s in total; 0 = closed loop, as fast as acknowledgements allow")
	fs.BoolVar(&o.RatePerClient, "rate-per-client", false, "--rate is per publisher rather than in total")
	fs.IntVar(&o.Inflight, "inflight", 0, "closed loop: messages in flight per publisher (default 1)")
	fs.Int64VarP(&f.count, "count", "n", 0, "messages in total across publishers (bench sub: to receive) instead of a duration")
	fs.DurationVarP(&f.duration, "duration", "d", 10*time.Second, "measured phase (bench conn: how long to hold the connections)")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "send for this long before measuring (excluded from statistics; 0 with -n; bench sub follows the publisher's)")
	fs.Float64Var(&o.ConnRate, "conn-rate", 0, "connections per second during the ramp, in total across shards; 0 = as fast as possible")
	fs.DurationVar(&o.Interval, "interval", time.Second, "progress and CSV row interval")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 5*time.Second, "how long to wait for outstanding acknowledgements and deliveries at the end (ends early after a fifth of it with nothing arriving)")
	fs.StringVarP(&f.format, "format", "F", "text", "report format: text, json (mergeable) or csv (one row per interval)")
	fs.StringVar(&f.maxLoss, "max-loss", "", "exit 7 when more than this percentage of expected messages is lost (e.g. 0, 0.1%)")
	fs.DurationVar(&o.MaxP99, "max-p99", 0, "exit 7 when the p99 latency (end-to-end, else publish-to-ack; bench conn: connect) exceeds this")
	fs.StringVar(&f.shard, "shard", "", "run shard I of N (I/N, from 0), splitting clients, subscribers, rates and ids with other processes")
	return f
}

// unusedFlags lists the load-shape flags mode does not use, and why:
// given anyway they would be silently ignored.
func unusedFlags(mode string) (flags []string, why string) {
	switch mode {
	case bench.ModePub:
		return []string{"subscribers"}, "bench pub only publishes: receive with 'mqtk bench sub', or use 'mqtk bench pubsub' for both sides"
	case bench.ModeSub:
		return []string{"clients", "rate", "rate-per-client", "inflight", "topics", "size", "retain", "warmup"},
			"bench sub only subscribes: give it to the 'mqtk bench pub' that sends the messages"
	case bench.ModeConn:
		return []string{"count", "rate", "rate-per-client", "qos", "inflight", "subscribers", "topic", "topics", "size", "retain", "warmup", "max-loss"},
			"bench conn only opens -c connections (paced by --conn-rate) and holds them for -d/--duration"
	}
	return nil, ""
}

// checkUnused refuses a flag the mode would ignore.
func checkUnused(cmd *cobra.Command, mode string) error {
	flags, why := unusedFlags(mode)
	for _, name := range flags {
		if !cmd.Flags().Changed(name) {
			continue
		}
		flag := "--" + name
		if sh := cmd.Flags().Lookup(name).Shorthand; sh != "" {
			flag = "-" + sh + "/" + flag
		}
		return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("%s has no effect in bench %s", flag, mode), Hints: []string{why}}
	}
	return nil
}

// options validates the flags and fills the bench Options.
func (f *benchFlags) options(cmd *cobra.Command, a *app) (*bench.Options, error) {
	o := f.o
	fs := cmd.Flags()
	if err := checkUnused(cmd, o.Mode); err != nil {
		return nil, err
	}
	if f.qos < 0 || f.qos > 2 {
		return nil, clierr.Usagef("-q/--qos %d out of range", f.qos).Hintf("use 0, 1 or 2")
	}
	o.QoS = byte(f.qos)
	o.Count = f.count
	o.Duration = f.duration
	if fs.Changed("count") {
		// -n alone bounds the run by count: no time limit, and no
		// warm-up unless asked for, so every counted message is measured.
		if !fs.Changed("duration") {
			o.Duration = 0
		}
		if !fs.Changed("warmup") {
			o.Warmup = 0
		}
	}
	// Refused above when given; cleared so that the recorded configuration
	// holds only what the mode used.
	switch o.Mode {
	case bench.ModeSub:
		o.Warmup, o.Clients = 0, 0
	case bench.ModeConn:
		o.Warmup, o.Subscribers = 0, 0
	case bench.ModePub:
		o.Subscribers = 0
	}
	if fs.Changed("inflight") && o.Inflight < 1 {
		return nil, clierr.Usagef("--inflight must be at least 1")
	}
	if f.maxLoss != "" {
		v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(f.maxLoss), "%"), 64)
		if err != nil {
			return nil, clierr.Usagef("--max-loss %q is not a percentage", f.maxLoss).Hintf("give a percentage such as 0, 0.1 or 1%%")
		}
		o.MaxLossPct = &v
	}
	o.Shards = 1
	if f.shard != "" {
		i, n, ok := strings.Cut(f.shard, "/")
		si, err1 := strconv.Atoi(i)
		sn, err2 := strconv.Atoi(n)
		if !ok || err1 != nil || err2 != nil {
			return nil, clierr.Usagef("--shard %q is not I/N", f.shard).Hintf("write I/N, e.g. 0/4 for the first of four processes")
		}
		o.Shard, o.Shards = si, sn
	}
	o.Format = f.format
	cfg, err := f.conn.config(cmd.Context())
	if err != nil {
		return nil, err
	}
	o.Conn = cfg
	// No broker named anywhere (flag, MQTK_* environment or profile): bench
	// the project's own broker in-process.
	c := f.conn
	o.Embedded = c.url == "" && c.host == "" && c.port == 0
	o.Progress = a.io.Err.IsTTY()
	o.Version, _, _ = buildInfo()
	o.IO = a.io
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &o, nil
}

func newBenchCmd(a *app, runF func(*bench.Options) error) *cobra.Command {
	mk := func(use, mode, short, long string) *cobra.Command {
		cmd := &cobra.Command{Use: use, Short: short, Long: long, Args: cobra.NoArgs}
		f := addBenchFlags(cmd, a, mode)
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd, a)
			if err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return bench.Run(cmd.Context(), o)
		}
		return cmd
	}
	root := mk("bench", bench.ModePubSub, "Benchmark a broker: throughput, end-to-end latency, loss",
		`Benchmark an MQTT broker honestly.

With no subcommand, bench runs 'pubsub': publishers and subscribers in one
process, so end-to-end latency is measured against one clock, and every
message is accounted for (lost, duplicated, out of order). With no broker
named (-L/--url, -h, MQTK_URL, a profile), bench starts mqtk's own broker
in-process on a loopback port and benchmarks that.

Short flags: as in other load tools, -c is --clients and -d is --duration
here, where pub, sub and rr use -c for a persistent session and -d for the
packet trace; bench spells those two --no-clean and --debug.

Load models:
  closed loop (--rate 0, the default): each publisher keeps --inflight
    messages outstanding; throughput is then about concurrency ÷ latency.
  scheduled (--rate N): message n is due at start + n/rate; latency is
    measured from the intended send time (no coordinated omission), sends
    that start more than one interval late are counted as overruns.

Examples:
  mqtk bench                                   # 10 s against the built-in broker
  mqtk bench -L mqtt://broker:1883 -q 0 -c 10 -s 100
  mqtk bench --rate 10000 -d 30s -F json > run.json
  mqtk bench -n 100000 -q 1 --max-loss 0 --max-p99 20ms   # CI gate, exit 7
  mqtk bench conn -c 10000 --conn-rate 2000 -L mqtt://broker:1883
  mqtk bench merge shard-*.json`)
	root.AddCommand(
		mk("pubsub", bench.ModePubSub, "Publishers and subscribers in one process (the default)", "Publishers and subscribers in one process: throughput, end-to-end and publish-to-ack latency, loss.\nTakes every flag of 'mqtk bench'."),
		mk("pub", bench.ModePub, "Publishers only: throughput and publish-to-ack latency",
			"Publishers only. Headers carry wall-clock timestamps so that 'mqtk bench sub' on\nanother host can time them (clock skew between hosts is then included)."),
		mk("sub", bench.ModeSub, "Subscribers only: receive rate, loss and latency from 'bench pub' messages",
			"Subscribers only, for messages published by 'mqtk bench pub' elsewhere. Runs for\n-d or until -n messages were received; loss is counted from sequence gaps."),
		mk("conn", bench.ModeConn, "Open and hold -c connections: connect rate and latency",
			"Open -c connections (paced by --conn-rate), hold them for -d and report connect\nlatency, failures by reason and connections that dropped while held."),
		newBenchMergeCmd(a),
	)
	return root
}

func newBenchMergeCmd(a *app) *cobra.Command {
	var format, maxLoss string
	var maxP99 time.Duration
	cmd := &cobra.Command{
		Use:   "merge RUN.json...",
		Short: "Combine 'bench --format json' reports (shards) into one, merging histograms exactly",
		Long: `Combine the JSON reports of the shards of one run ('mqtk bench --shard I/N
--format json' on N processes) into one report. Histograms are merged bucket
by bucket, so merged percentiles are exact; throughput is recomputed over the
whole run. The reports must be distinct shards of one N with the same mode,
load model, clients, subscribers, rate and topic.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("bench merge needs the JSON reports to merge"),
					Hints: []string{"run each shard with 'mqtk bench --shard I/N --format json > shard-I.json', then: mqtk bench merge shard-*.json"}}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "text", "json", "csv":
			default:
				return clierr.Usagef("unknown --format %q", format).Hintf("use text, json or csv")
			}
			var ml *float64
			if maxLoss != "" {
				v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(maxLoss), "%"), 64)
				if err != nil {
					return clierr.Usagef("--max-loss %q is not a percentage", maxLoss).Hintf("give a percentage such as 0, 0.1 or 1%%")
				}
				ml = &v
			}
			var reps []*bench.Report
			for _, p := range args {
				fh, err := os.Open(p)
				if err != nil {
					return &clierr.Error{Kind: clierr.KindUsage, Op: "read report", Err: err}
				}
				r, err := bench.ReadJSON(fh)
				fh.Close()
				if err != nil {
					return &clierr.Error{Kind: clierr.KindUsage, Op: "read report " + p, Err: err,
						Hints: []string{"merge takes the output of 'mqtk bench --format json'"}}
				}
				r.Source = p
				reps = append(reps, r)
			}
			m, err := bench.Merge(reps)
			if err != nil {
				return &clierr.Error{Kind: clierr.KindUsage, Err: err,
					Hints: []string{"merge takes the --format json reports of one run's shards, each once"}}
			}
			if err := bench.Write(a.io.Out, m, format); err != nil {
				return err
			}
			return bench.Check(m, ml, maxP99)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "F", "text", "report format: text, json or csv")
	cmd.Flags().StringVar(&maxLoss, "max-loss", "", "exit 7 when the merged loss exceeds this percentage")
	cmd.Flags().DurationVar(&maxP99, "max-p99", 0, "exit 7 when the merged p99 exceeds this")
	return cmd
}
