package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/ui"
)

// mosqFails runs a mosquitto client that is expected to be refused and
// returns its combined output.
func mosqFails(t *testing.T, bin, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err == nil {
		t.Fatalf("%s %s succeeded, want refusal:\n%s", filepath.Base(bin), strings.Join(args, " "), out)
	}
	return string(out)
}

// TestOpsThroughBroker checks the wiring of the ops hooks through the public
// Broker API: a password file made by Debian's mosquitto_passwd, the store
// across a restart, the JSON trace in the log, and /metrics counting a
// refused login.
func TestOpsThroughBroker(t *testing.T) {
	pub, sub := mosquittotest.RequireClients(t)
	pwfile := mosquittotest.PasswordFile(t, "alice", "s3cret")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	log := &ui.SyncBuffer{}
	opts := Options{
		Listeners:    []string{"tcp://127.0.0.1:0"},
		PasswordFile: pwfile,
		DataDir:      data,
		Trace:        true,
		LogFormat:    "json",
		HTTPAddr:     "127.0.0.1:0",
		Log:          log,
	}
	b := startBroker(t, opts)
	addr := b.tcpAddr(t)
	auth := []string{"-u", "alice", "-P", "s3cret"}
	mosq(t, pub, addr, append(auth, "-q", "1", "-r", "-t", "ops/state", "-m", "on")...)
	mosq(t, sub, addr, append(auth, "-c", "-i", "ops-durable", "-q", "1", "-t", "ops/jobs/#", "-E")...)
	mosq(t, pub, addr, append(auth, "-q", "2", "-t", "ops/jobs/1", "-m", "job-1")...)
	mosqFails(t, pub, addr, "-u", "alice", "-P", "wrong", "-t", "ops/x", "-m", "no")

	_, body := httpGet(t, "http://"+b.HTTPAddr()+"/metrics")
	got := parseProm(t, body)
	if got["mqtk_broker_auth_failures_total"] != 1 {
		t.Errorf("auth_failures_total = %v, want 1", got["mqtk_broker_auth_failures_total"])
	}
	if got["mqtk_broker_retained_messages"] != 1 {
		t.Errorf("retained_messages = %v, want 1", got["mqtk_broker_retained_messages"])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// The trace went to the log as JSON lines.
	var sawPublish bool
	for _, line := range strings.Split(log.String(), "\n") {
		var r traceRecord
		if !strings.Contains(line, `"direction"`) || json.Unmarshal([]byte(line), &r) != nil {
			continue
		}
		if r.Direction == "in" && r.Type == "PUBLISH" && r.Topic == "ops/state" && r.Retain {
			sawPublish = true
		}
	}
	if !sawPublish {
		t.Errorf("no JSON trace line for the retained PUBLISH in the log:\n%s", log.String())
	}
	if bytes.Contains([]byte(log.String()), []byte("s3cret")) {
		t.Error("the log contains the password")
	}

	// Same data directory: retained state and the queued message are back.
	opts.Log = &ui.SyncBuffer{}
	opts.Trace = false
	b2 := startBroker(t, opts)
	addr2 := b2.tcpAddr(t)
	out := mosq(t, sub, addr2, append(auth, "-t", "ops/state", "-C", "1", "-W", "10")...)
	if strings.TrimSpace(out) != "on" {
		t.Errorf("retained after restart = %q, want on", out)
	}
	out = mosq(t, sub, addr2, append(auth, "-c", "-i", "ops-durable", "-q", "1", "-t", "ops/jobs/#", "-v", "-C", "1", "-W", "10")...)
	if strings.TrimSpace(out) != "ops/jobs/1 job-1" {
		t.Errorf("queued message after restart = %q, want ops/jobs/1 job-1", out)
	}
	out = mosq(t, sub, addr2, append(auth, "-t", "$SYS/broker/version", "-C", "1", "-W", "10")...)
	if strings.TrimSpace(out) == "" {
		t.Error("$SYS/broker/version not delivered through Broker")
	}
}
