package pub

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/ui"
)

// TestLineModeSurvivesBrokerRestart pipes 10,000 lines into -l -q 1 and
// restarts mosquitto (persistence on) halfway. A persistent mosquitto_sub
// session must see every line, first occurrences in order; QoS 1 allows
// duplicates, which are accounted for below.
//
// The stop is SIGTERM, so mosquitto saves its state first. With SIGKILL
// mosquitto comes back from its last autosave, and it acknowledges a
// PUBLISH before saving it; a crash can then lose a message the publisher
// was told was delivered (in a trial of 14 SIGKILL runs, one line went
// missing, and the broker had sent PUBACK for it), which no client can
// detect, so that variant would test mosquitto's durability, not pub.
func TestLineModeSurvivesBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a broker")
	}
	for _, v := range []mqttconn.Version{mqttconn.V5, mqttconn.V311} {
		t.Run(v.String(), func(t *testing.T) { lineModeRestart(t, v) })
	}
}

func lineModeRestart(t *testing.T, v mqttconn.Version) {
	const total = 10000
	b := broker(t, mosquittotest.Options{Persistence: true})
	_, subBin := mosquittotest.RequireClients(t)
	id := fmt.Sprintf("restart-probe-%d", time.Now().UnixNano())
	subArgs := append(tcpArgs(b), "-c", "-i", id, "-q", "1", "-t", "stream")
	// Create the persistent session first, so nothing depends on when the
	// live subscriber below connects or reconnects.
	if out, err := exec.Command(subBin, append(subArgs, "-E")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_sub -E: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sub := exec.CommandContext(ctx, subBin, subArgs...)
	subOut, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })

	// Read what the subscriber gets until the last line has arrived.
	var received []int
	readDone := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(subOut)
		for sc.Scan() {
			n, err := strconv.Atoi(sc.Text())
			if err != nil {
				readDone <- fmt.Errorf("unexpected payload %q", sc.Text())
				return
			}
			received = append(received, n)
			if n == total {
				readDone <- nil
				return
			}
		}
		readDone <- fmt.Errorf("subscriber output ended after %d messages: %v", len(received), sc.Err())
	}()

	pr, pw := io.Pipe()
	streams, _, errb := ui.Test(pr)
	o := &Options{Config: tcpConfig(t, b, v), Dial: mqttconn.Dial, IO: streams, In: pr,
		Source: SourceLines, Topic: "stream", QoS: 1, ReconnectTimeout: time.Minute}
	runErr := make(chan error, 1)
	go func() { runErr <- Run(ctx, o) }()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer pw.Close()
		w := bufio.NewWriter(pw)
		for i := 1; i <= total; i++ {
			fmt.Fprintf(w, "%d\n", i)
			if i == total/2 {
				// The pipe hands lines over only as Run reads them, so the
				// restart lands in the middle of the stream.
				if err := w.Flush(); err != nil {
					return
				}
				b.Restart()
			}
		}
		_ = w.Flush()
	}()
	wg.Wait()

	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v\nstderr:\n%s", err, errb.String())
	}
	stderr := errb.String()
	if !strings.Contains(stderr, "connection lost") || !strings.Contains(stderr, "reconnected") {
		t.Errorf("the restart did not interrupt the stream; stderr:\n%s", stderr)
	}
	var resent int
	summary := ""
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "sent ") && strings.Contains(l, "acked") {
			summary = l
			fmt.Sscanf(l[strings.Index(l, "(")+1:], "%d", &resent)
		}
	}
	if !strings.HasPrefix(summary, fmt.Sprintf("mqtk: sent %d, acked %d, failed 0", total, total)) {
		t.Errorf("summary %q, want sent %d, acked %d, failed 0", summary, total, total)
	}

	select {
	case err := <-readDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatalf("subscriber got %d messages before the deadline", len(received))
	}
	seen := make(map[int]bool, total)
	var firsts []int
	dups := 0
	for _, n := range received {
		if seen[n] {
			dups++
			continue
		}
		seen[n] = true
		firsts = append(firsts, n)
	}
	if len(firsts) != total {
		t.Fatalf("%d distinct lines arrived, want %d", len(firsts), total)
	}
	for i, n := range firsts {
		if n != i+1 {
			t.Fatalf("first occurrences out of order at %d: got line %d", i, n)
		}
	}
	// Duplicates have two sources, both allowed at QoS 1: lines this
	// publisher sent again, and messages the broker had in flight to the
	// subscriber when it stopped (at most max_inflight_messages, 20).
	if dups > resent+20 {
		t.Errorf("%d duplicates, more than the %d lines sent again plus 20 in flight to the subscriber", dups, resent)
	}
	t.Logf("%d lines, %d resent after the restart, %d duplicates at the subscriber", total, resent, dups)
}

// TestLineModeStopsOnCancel: Ctrl-C while stdin is still open ends the
// run at once with a summary, instead of waiting for input forever.
func TestLineModeStopsOnCancel(t *testing.T) {
	b := broker(t, mosquittotest.Options{})
	pr, pw := io.Pipe()
	defer pw.Close()
	streams, _, errb := ui.Test(pr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := &Options{Config: tcpConfig(t, b, mqttconn.V5), Dial: mqttconn.Dial, IO: streams, In: pr,
		Source: SourceLines, Topic: "cancel", QoS: 1}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	if _, err := io.WriteString(pw, "one\n"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if mqttconn.KindOf(err) != mqttconn.KindInterrupted {
			t.Fatalf("Run after cancel: %v (kind %v), want KindInterrupted", err, mqttconn.KindOf(err))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if !strings.Contains(errb.String(), "mqtk: sent ") {
		t.Errorf("no summary after cancel: %q", errb.String())
	}
	pw.Close() // lets the stdin reader goroutine finish for goleak
}
