package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/bench"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ui"
)

// parseBench runs `bench ARGS` with a runF that captures the Options.
func parseBench(t *testing.T, env map[string]string, args ...string) (*bench.Options, error) {
	t.Helper()
	streams, _, _ := ui.Test(nil)
	a := &app{io: streams, getenv: func(k string) string { return env[k] }}
	var got *bench.Options
	root := &cobra.Command{Use: "mqtk", SilenceErrors: true, SilenceUsage: true}
	root.PersistentFlags().Bool("help", false, "help")
	root.AddCommand(newBenchCmd(a, func(o *bench.Options) error { got = o; return nil }))
	root.SetArgs(append([]string{"bench"}, args...))
	err := root.Execute()
	return got, err
}

func TestBenchFlagsFillOptions(t *testing.T) {
	o, err := parseBench(t, nil, "-c", "7", "-d", "3s", "--subscribers", "3", "-t", "x/%c/%t", "--topics", "4",
		"-q", "2", "-s", "256", "-r", "--rate", "500", "--rate-per-client", "--warmup", "1s", "--conn-rate", "50",
		"--max-loss", "0.5%", "--max-p99", "20ms", "--shard", "1/3", "-F", "json", "-h", "127.0.0.1", "--debug", "--no-clean", "-i", "me")
	if err != nil {
		t.Fatal(err)
	}
	if o.Mode != bench.ModePubSub || o.Clients != 7 || o.Duration != 3*time.Second || o.Subscribers != 3 || o.Topic != "x/%c/%t" ||
		o.Topics != 4 || o.QoS != 2 || o.Size != 256 || !o.Retain || o.Rate != 500 || !o.RatePerClient || o.Warmup != time.Second ||
		o.ConnRate != 50 || *o.MaxLossPct != 0.5 || o.MaxP99 != 20*time.Millisecond || o.Shard != 1 || o.Shards != 3 || o.Format != "json" {
		t.Errorf("options: %+v", o)
	}
	if o.Embedded || o.Conn.Host != "127.0.0.1" || o.Conn.Debug == nil || !o.Conn.NoClean {
		t.Errorf("connection: embedded=%v %+v", o.Embedded, o.Conn)
	}

	// -n alone: a count-bounded run, no time limit and no warm-up.
	o, err = parseBench(t, nil, "pub", "-n", "1000")
	if err != nil || o.Mode != bench.ModePub || o.Count != 1000 || o.Duration != 0 || o.Warmup != 0 {
		t.Errorf("-n: %v %+v", err, o)
	}
	// No broker anywhere: the embedded default.
	o, err = parseBench(t, nil)
	if err != nil || !o.Embedded || o.Duration != 10*time.Second || o.Warmup != 2*time.Second || o.Clients != 10 {
		t.Errorf("default: %v %+v", err, o)
	}
	// A broker from the environment is a broker given.
	o, err = parseBench(t, map[string]string{"MQTK_URL": "mqtt://127.0.0.1:1999"}, "conn")
	if err != nil || o.Embedded || o.Conn.Port != 1999 || o.Mode != bench.ModeConn {
		t.Errorf("MQTK_URL: %v %+v", err, o)
	}
}

// Flags a mode would ignore, bad numbers and TLS flags without a broker
// to use them are usage errors that name the flag and the cause.
func TestBenchRefusesIgnoredAndBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pub", "-h", "x", "--subscribers", "5"}, "--subscribers has no effect in bench pub"},
		{[]string{"sub", "-h", "x", "-c", "7", "--rate", "100"}, "-c/--clients has no effect in bench sub"},
		{[]string{"sub", "-h", "x", "--rate", "100"}, "--rate has no effect in bench sub"},
		{[]string{"sub", "-h", "x", "--warmup", "1s"}, "--warmup has no effect in bench sub"},
		{[]string{"conn", "-h", "x", "-n", "100"}, "-n/--count has no effect in bench conn"},
		{[]string{"conn", "-h", "x", "--rate", "10"}, "--rate has no effect in bench conn"},
		{[]string{"conn", "-h", "x", "-q", "0"}, "-q/--qos has no effect in bench conn"},
		{[]string{"conn", "-h", "x", "--inflight", "2"}, "--inflight has no effect in bench conn"},
		{[]string{"-h", "x", "--rate", "Inf"}, "--rate +Inf is not a number"},
		{[]string{"-h", "x", "--rate", "NaN"}, "--rate NaN is not a number"},
		{[]string{"-h", "x", "--max-loss", "NaN"}, "--max-loss NaN out of range"},
		{[]string{"-h", "x", "--conn-rate", "NaN"}, "--conn-rate NaN is not a number"},
		{[]string{"-h", "x", "-t", "a/%x"}, `unknown placeholder "%x"`},
		{[]string{"-h", "x", "--shard", "0/2", "-c", "4"}, "--subscribers 1 leaves some shards without subscribers"},
		{[]string{"--cafile", "ca.pem"}, "--cafile has no effect on the in-process broker"},
		{[]string{"--insecure"}, "--insecure has no effect on the in-process broker"},
	} {
		_, err := parseBench(t, nil, c.args...)
		if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want a usage error containing %q", c.args, err, c.want)
		}
	}
	// What each mode does not use is cleared, so the recorded
	// configuration holds only what the run used.
	o, err := parseBench(t, nil, "sub", "-h", "x")
	if err != nil || o.Clients != 0 || o.Warmup != 0 {
		t.Errorf("sub: %v %+v", err, o)
	}
	o, err = parseBench(t, nil, "conn", "-h", "x", "--max-p99", "50ms")
	if err != nil || o.Subscribers != 0 || o.Warmup != 0 || o.MaxP99 != 50*time.Millisecond {
		t.Errorf("conn: %v %+v", err, o)
	}
	o, err = parseBench(t, nil, "-L", "mqtts://127.0.0.1:8883", "--cafile", "ca.pem")
	if err != nil || o.Embedded || o.Conn.TLS.CAFile != "ca.pem" {
		t.Errorf("--cafile with -L: %v %+v", err, o)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--size", "8"},
		{"--rate", "10", "--inflight", "2"},
		{"-q", "0", "--max-loss", "0"},
		{"-q", "3"},
		{"--inflight", "0"},
		{"--shard", "1of2", "-h", "x"},
	} {
		if _, err := parseBench(t, nil, args...); clierr.KindOf(err) != clierr.KindUsage {
			t.Errorf("%v: got %v, want a usage error", args, err)
		}
	}
}
