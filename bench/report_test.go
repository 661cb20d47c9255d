package bench

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixedReport is a report built from fixed inputs, no network: what the
// renderers must turn into exactly the golden files.
func fixedReport() *Report {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := &Report{
		Schema: Schema, Mode: ModePubSub, LoadModel: "scheduled", Shards: 1,
		Env: Env{BrokerURL: "mqtt://127.0.0.1:1883", Broker: "external", GOMAXPROCS: 2, NumCPU: 2,
			GoVersion: "go1.26.0", Version: "v1.2.3", CPUUser: 1.5, CPUSys: 0.5, CPUPerMsgUS: 66.667, CPUPercent: 33.3},
		Config: Config{Clients: 3, Subscribers: 2, Topic: "mqtk/bench/%i", Topics: 1, QoS: 1, Size: 100,
			Rate: 10000, Duration: "3s", Warmup: "0s", ProtocolVer: "5", Interval: "1s", DrainTimeout: "5s"},
		Started: start, Ended: start.Add(3 * time.Second), Measured: 3,
		Connect: Connect{Attempted: 5, OK: 5, PerSecond: 500, RampS: 0.01},
		Publish: &Publish{Publishers: 3, Sent: 30000, Acked: 30000, Total: 30000, PerSecond: 10000, MBPerSecond: 1, Offered: 10000, Overruns: 12, MaxLagMS: 3.5},
		Receive: &Receive{Subscribers: 2, Delivery: Delivery{Expected: 60000, Received: 59990, Unique: 59980, UniqueMeasured: 59980, Lost: 20, Duplicated: 10, OutOfOrder: 5, LossPct: 0.033},
			Measured: 59990, PerSecond: 19996.667, MBPerSecond: 2},
		Warnings: []string{"an example warning"},
	}
	r.Hists.Connect, r.Hists.Ack, r.Hists.E2E, r.Hists.E2EUncorrected = newHist(), newHist(), newHist(), newHist()
	for i := int64(0); i < 5; i++ {
		record(r.Hists.Connect, (1+i)*1_000_000)
	}
	for i := int64(0); i < 1000; i++ {
		record(r.Hists.Ack, 200_000+i*300)
		record(r.Hists.E2E, 300_000+i*i*20)
		record(r.Hists.E2EUncorrected, 300_000+i*i*10)
	}
	for k := range 3 {
		h := newIvHist()
		for i := int64(0); i < 100; i++ {
			record(h, 300_000+int64(k)*100_000+i*1000)
		}
		r.Intervals = append(r.Intervals, Interval{T: float64(k + 1), Sent: 10000, Acked: 10000, Received: 19990 + int64(k),
			SentPS: 10000, RecvPS: 19990.5, P50: ms(float64(h.ValueAtQuantile(50))), P99: ms(float64(h.ValueAtQuantile(99))), Max: ms(float64(h.Max())), hist: h})
	}
	r.summarize()
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./bench -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./bench -run TestRender -update to accept):\n%s", name, got)
	}
}

func TestRenderText(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, fixedReport()); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.txt", b.Bytes())
}

func TestRenderJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, fixedReport()); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", b.Bytes())
	// The document reads back into the same report, histograms included.
	back, err := ReadJSON(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	want := fixedReport()
	if !back.Hists.E2E.Equals(want.Hists.E2E) || !back.Hists.Ack.Equals(want.Hists.Ack) || !back.Intervals[2].hist.Equals(want.Intervals[2].hist) {
		t.Error("histograms changed in the JSON round trip")
	}
	var again bytes.Buffer
	if err := WriteJSON(&again, back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), b.Bytes()) {
		t.Error("JSON → report → JSON is not stable")
	}
}

func TestRenderCSV(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCSV(&b, fixedReport()); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.csv", b.Bytes())
}

func TestRenderQoS0AndConn(t *testing.T) {
	r := fixedReport()
	r.Config.QoS = 0
	r.Hists.Ack = nil
	r.Publish.Acked = 0
	r.LoadModel = "closed-loop"
	r.Config.Inflight = 1
	r.Config.Warmup = "2s" // delivery counts then say they include it
	r.summarize()
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "report_qos0.txt", b.Bytes())

	c := &Report{Schema: Schema, Mode: ModeConn, LoadModel: "none", Shards: 1, Env: r.Env,
		Config: Config{Clients: 4, Warmup: "0s", ProtocolVer: "5"}, Measured: 2,
		Connect:   Connect{Attempted: 4, OK: 3, Failed: 1, Failures: map[string]int{"refused": 1}, PerSecond: 300, RampS: 0.01},
		Intervals: []Interval{}}
	c.Hists.Connect = newHist()
	for i := int64(1); i <= 3; i++ {
		record(c.Hists.Connect, i*2_000_000)
	}
	c.summarize()
	b.Reset()
	if err := WriteText(&b, c); err != nil {
		t.Fatal(err)
	}
	golden(t, "report_conn.txt", b.Bytes())
}

func TestMergeReports(t *testing.T) {
	a, b := fixedReport(), fixedReport()
	a.Env.Shard, b.Env.Shard = "0/2", "1/2"
	b.Started = a.Started.Add(time.Second)
	b.Ended = a.Ended.Add(time.Second)
	m, err := Merge([]*Report{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if m.Shards != 2 || m.Publish.Sent != 60000 || m.Receive.Unique != 119960 || m.Receive.Subscribers != 4 {
		t.Fatalf("merged counts wrong: %+v %+v", m.Publish, m.Receive.Delivery)
	}
	// Throughput is the total over (last end − first start): 4 s, not the
	// sum of the two rates.
	if m.Measured != 4 || m.Publish.PerSecond != 15000 {
		t.Errorf("measured %v s, %v msg/s; want 4 s, 15000 msg/s", m.Measured, m.Publish.PerSecond)
	}
	// Expected is every message sent times every subscriber.
	if m.Receive.Expected != 60000*4 || m.Receive.Lost != 240000-119960 {
		t.Errorf("expected %d lost %d", m.Receive.Expected, m.Receive.Lost)
	}
	both := mergeHists(a.Hists.E2E, b.Hists.E2E)
	if !m.Hists.E2E.Equals(both) || m.Receive.E2E != Summarize(both) {
		t.Error("merged percentiles are not those of the merged histogram")
	}
	if m.Intervals[0].Sent != 20000 || m.Intervals[0].hist.TotalCount() != 200 {
		t.Errorf("intervals not merged row by row: %+v", m.Intervals[0])
	}
	c := fixedReport()
	c.Mode, c.Env.Shard = ModePub, "1/2"
	if _, err := Merge([]*Report{a, c}); err == nil {
		t.Error("merged reports of different modes")
	}
}

// Merge refuses what is not the shards of one run, naming the report and
// the mismatch: counting such inputs as one run would misreport it.
func TestMergeRefusesWhatIsNotOneRun(t *testing.T) {
	shard := func(src, s string) *Report {
		r := fixedReport()
		r.Source, r.Env.Shard = src, s
		return r
	}
	for _, c := range []struct {
		name string
		reps []*Report
		want string
	}{
		{"same file twice", []*Report{shard("a.json", "0/2"), shard("a.json", "0/2")}, "a.json and a.json are both shard 0/2 (the same file twice?)"},
		{"different N", []*Report{shard("a.json", "0/2"), shard("b.json", "0/3")}, "b.json is shard 0/3, a.json is shard 0/2: the shards of one run share N"},
		{"not shards", []*Report{shard("a.json", ""), shard("b.json", "")}, "a.json is not a shard"},
		{"closed loop with scheduled", func() []*Report {
			b := shard("b.json", "1/2")
			b.LoadModel, b.Config.Rate = "closed-loop", 0
			return []*Report{shard("a.json", "0/2"), b}
		}(), "b.json is closed-loop, a.json is scheduled"},
		{"clients", func() []*Report {
			b := shard("b.json", "1/2")
			b.Config.Clients = 4
			return []*Report{shard("a.json", "0/2"), b}
		}(), "b.json has -c/--clients 4, a.json has -c/--clients 3"},
		{"subscribers", func() []*Report {
			b := shard("b.json", "1/2")
			b.Config.Subscribers = 5
			return []*Report{shard("a.json", "0/2"), b}
		}(), "--subscribers 5"},
		{"rate", func() []*Report {
			b := shard("b.json", "1/2")
			b.Config.Rate = 20000
			return []*Report{shard("a.json", "0/2"), b}
		}(), "--rate 20000"},
		{"topic", func() []*Report {
			b := shard("b.json", "1/2")
			b.Config.Topic = "other/%i"
			return []*Report{shard("a.json", "0/2"), b}
		}(), "-t/--topic other/%i"},
		{"already merged", func() []*Report {
			b := shard("b.json", "")
			b.Shards = 2
			return []*Report{shard("a.json", "0/2"), b}
		}(), "b.json is already merged from 2 shards"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Merge(c.reps)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v (report %v), want an error containing %q", err, m != nil, c.want)
			}
		})
	}

	// A schema line alone is no report.
	r, err := ReadJSON(strings.NewReader(`{"schema":"mqtk-bench/1"}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Source = "empty.json"
	if _, err := Merge([]*Report{r}); err == nil || !strings.Contains(err.Error(), `empty.json: mode "" is not a bench mode`) {
		t.Errorf("empty report: %v", err)
	}

	// One report alone is re-rendered; an incomplete set of shards merges
	// with a warning that says which are missing.
	if m, err := Merge([]*Report{fixedReport()}); err != nil || m.Publish.Sent != 30000 {
		t.Errorf("single report: %v", err)
	}
	m, err := Merge([]*Report{shard("a.json", "0/3"), shard("c.json", "2/3")})
	if err != nil || !slices.Contains(m.Warnings, "shard 1/3 missing: this report covers only part of the run") {
		t.Errorf("incomplete set: %v %q", err, m.Warnings)
	}
}
