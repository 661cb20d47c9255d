package broker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
)

// The interop tests drive two kinds of broker with software nobody here
// wrote: the broker started in-process, and the real `mqtk broker` binary.

var mqtkBuild struct {
	once sync.Once
	path string
	err  error
	dir  string
}

// mqtkBinary builds cmd/mqtk once per test run.
func mqtkBinary(t *testing.T) string {
	t.Helper()
	mqtkBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "mqtk-broker-test-")
		if err != nil {
			mqtkBuild.err = err
			return
		}
		mqtkBuild.dir = dir
		mqtkBuild.path = filepath.Join(dir, "mqtk")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", mqtkBuild.path, "github.com/mqtk/mqtk/cmd/mqtk").CombinedOutput()
		if err != nil {
			mqtkBuild.err = fmt.Errorf("go build ./cmd/mqtk: %v\n%s", err, out)
		}
	})
	if mqtkBuild.err != nil {
		t.Fatal(mqtkBuild.err)
	}
	return mqtkBuild.path
}

type brokerKind struct {
	name  string
	start func(t *testing.T, o Options) []Listener
}

var brokerKinds = []brokerKind{
	{"in-process", func(t *testing.T, o Options) []Listener { return startBroker(t, o).Listeners() }},
	{"process", startProcess},
}

// startProcess runs `mqtk broker` with flags equivalent to o and reads the
// bound listeners from its banner. Cleanup sends SIGTERM and checks the
// exit code is 0.
func startProcess(t *testing.T, o Options) []Listener {
	return startProc(t, o).lns
}

// startProcessArgs is startProcess with extra command-line arguments; it
// also returns a function reading the process's stderr so far.
func startProcessArgs(t *testing.T, o Options, extra ...string) ([]Listener, func() string) {
	p := startProc(t, o, extra...)
	return p.lns, p.log
}

// procBroker is a running `mqtk broker` started by startProc.
type procBroker struct {
	cmd  *exec.Cmd
	lns  []Listener
	done chan struct{} // closed when stderr reached EOF

	mu     sync.Mutex
	stderr strings.Builder

	waitOnce sync.Once
	waitErr  error
}

func (p *procBroker) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// stop sends sig and waits up to 15 s for the process to exit (then kills
// it); it returns the error of cmd.Wait, nil for exit 0. Calling it again
// returns the first result.
func (p *procBroker) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	p.waitOnce.Do(func() {
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			t.Errorf("mqtk broker did not stop within 15s of %v", sig)
		}
		p.waitErr = p.cmd.Wait()
	})
	return p.waitErr
}

// waitLog waits up to 10 s for the log to contain s.
func (p *procBroker) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("mqtk broker did not log %q within 10s:\n%s", s, p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startProc runs `mqtk broker` with flags equivalent to o plus extra, and
// waits for its banner. Cleanup stops it with SIGTERM and checks exit 0.
func startProc(t *testing.T, o Options, extra ...string) *procBroker {
	t.Helper()
	bin := mqtkBinary(t)
	args := []string{"broker", "--color", "never"}
	for _, l := range o.Listeners {
		args = append(args, "--listen", l)
	}
	flag := func(name, v string) {
		if v != "" {
			args = append(args, "--"+name, v)
		}
	}
	flag("tls-cert", o.TLSCert)
	flag("tls-key", o.TLSKey)
	flag("tls-ca", o.TLSCA)
	flag("password-file", o.PasswordFile)
	flag("acl-file", o.ACLFile)
	flag("data", o.DataDir)
	for name, on := range map[string]bool{"require-client-cert": o.RequireClientCert, "cert-as-username": o.CertAsUsername, "allow-anonymous": o.AllowAnonymous} {
		if on {
			args = append(args, "--"+name)
		}
	}
	if o.Limits.AuthFailDelay > 0 {
		flag("auth-fail-delay", o.Limits.AuthFailDelay.String())
	}
	args = append(args, extra...)
	p := &procBroker{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir())
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lns []Listener
	ready := make(chan struct{})
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		readyOnce := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			if f := strings.Fields(strings.TrimPrefix(line, "mqtk:")); len(f) >= 1 && strings.Contains(f[0], "://") && !strings.HasPrefix(f[0], "http") {
				if u, err := url.Parse(f[0]); err == nil {
					l := Listener{Scheme: map[string]string{"mqtt": "tcp", "mqtts": "tls", "ws": "ws", "wss": "wss", "unix": "unix"}[u.Scheme], Addr: u.Host, Path: u.Path}
					if l.Scheme == "unix" {
						l.Addr = u.Path
					}
					lns = append(lns, l)
				}
			}
			p.mu.Unlock()
			if strings.Contains(line, "press Ctrl-C to stop") {
				readyOnce.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case <-ready:
	case <-p.done:
		_ = p.cmd.Wait()
		t.Fatalf("mqtk broker exited early:\n%s", p.log())
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		_ = p.cmd.Wait()
		t.Fatalf("mqtk broker not ready within 20s:\n%s", p.log())
	}
	t.Cleanup(func() {
		if err := p.stop(t, syscall.SIGTERM); err != nil {
			t.Errorf("mqtk broker after SIGTERM: %v (want exit 0)\n%s", err, p.log())
		}
	})
	p.mu.Lock()
	p.lns = append([]Listener(nil), lns...)
	p.mu.Unlock()
	return p
}

// --tls alone: certificates from tlsgen, the banner names the CA file, and
// mosquitto_pub trusting that file gets through.
func TestProcessTLSWithGeneratedCertificates(t *testing.T) {
	pub, sub := mosquittotest.RequireClients(t)
	lns, log := startProcessArgs(t, Options{Listeners: []string{"tcp://127.0.0.1:0", "tls://127.0.0.1:0"}}, "--tls")
	m := regexp.MustCompile(`--cafile ([^\s)]+)`).FindStringSubmatch(log())
	if m == nil {
		t.Fatalf("banner names no --cafile:\n%s", log())
	}
	host, port := hostPort(t, listenerOf(t, lns, "tls"))
	base := []string{"-h", host, "-p", port, "--cafile", m[1]}
	got := subUntil(t, pub, sub, append(append([]string{}, base...), "-t", "gen/tls"), append(append([]string{}, base...), "-t", "gen/tls", "-m", "made-for-you"))
	if strings.TrimSpace(got) != "made-for-you" {
		t.Fatalf("got %q", got)
	}
}

func listenerOf(t *testing.T, lns []Listener, scheme string) Listener {
	t.Helper()
	for _, l := range lns {
		if l.Scheme == scheme {
			return l
		}
	}
	t.Fatalf("no %s listener in %v", scheme, lns)
	return Listener{}
}

func hostPort(t *testing.T, l Listener) (string, string) {
	t.Helper()
	i := strings.LastIndex(l.Addr, ":")
	return l.Addr[:i], l.Addr[i+1:]
}

// run runs a command with a deadline and returns stdout, stderr and the
// exit code.
func run(t *testing.T, d time.Duration, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out.String(), errb.String(), code
}

// subUntil runs mosquitto_sub for one message while publishing repeatedly
// (mosquitto_sub has no "subscribed" signal), bounded to 15 s.
func subUntil(t *testing.T, pub, sub string, subArgs, pubArgs []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sub, append(subArgs, "-C", "1", "-W", "15")...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	for i := 0; i < 60; i++ {
		if _, e, code := run(t, 10*time.Second, pub, pubArgs...); code != 0 {
			t.Fatalf("mosquitto_pub %v: exit %d: %s", pubArgs, code, e)
		}
		select {
		case err := <-waited:
			if err != nil {
				t.Fatalf("mosquitto_sub %v: %v: %s", subArgs, err, errb.String())
			}
			return out.String()
		case <-time.After(250 * time.Millisecond):
		}
	}
	cancel()
	<-waited
	t.Fatalf("mosquitto_sub %v received nothing", subArgs)
	return ""
}

func requirePython(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import paho.mqtt.client").CombinedOutput(); err != nil {
		t.Skipf("Debian's python3-paho-mqtt is not usable (%v: %s); .ci/run installs it", err, out)
	}
	return py
}

func TestInteropClients(t *testing.T) {
	pub, sub := mosquittotest.RequireClients(t)
	py := requirePython(t)
	for _, kind := range brokerKinds {
		t.Run(kind.name, func(t *testing.T) {
			lns := kind.start(t, Options{Listeners: []string{"tcp://127.0.0.1:0", "ws://127.0.0.1:0/mqtt"}})
			host, port := hostPort(t, listenerOf(t, lns, "tcp"))
			conn := []string{"-h", host, "-p", port}
			for _, v := range []string{"311", "5"} {
				t.Run("mosquitto-v"+v, func(t *testing.T) {
					base := append(append([]string{}, conn...), "-V", v)
					args := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
					for q := 0; q <= 2; q++ {
						qs := strconv.Itoa(q)
						topic := "mq/v" + v + "/q" + qs
						got := subUntil(t, pub, sub, args("-t", topic, "-q", qs, "-v"), args("-t", topic, "-q", qs, "-m", "hello"+qs))
						if strings.TrimSpace(got) != topic+" hello"+qs {
							t.Errorf("QoS %d: got %q", q, got)
						}
					}
					// Retained: set, read by a late subscriber, clear.
					rt := "mq/v" + v + "/retained"
					if _, e, code := run(t, 10*time.Second, pub, args("-t", rt, "-q", "1", "-r", "-m", "kept")...); code != 0 {
						t.Fatal(e)
					}
					if out, e, code := run(t, 15*time.Second, sub, args("-t", rt, "-C", "1", "-W", "10")...); code != 0 || strings.TrimSpace(out) != "kept" {
						t.Fatalf("retained: %q %s (exit %d)", out, e, code)
					}
					if _, e, code := run(t, 10*time.Second, pub, args("-t", rt, "-q", "1", "-r", "-n")...); code != 0 {
						t.Fatal(e)
					}
					if out, _, code := run(t, 15*time.Second, sub, args("-t", rt, "-C", "1", "-W", "2")...); code != 27 || out != "" {
						t.Fatalf("cleared retained still delivered: %q (exit %d, want 27)", out, code)
					}
					// Persistent session: QoS 1 messages queued while offline.
					id := "persist-v" + v
					ps := []string{"-c", "-i", id, "-q", "1", "-t", "mq/v" + v + "/queue"}
					if v == "5" {
						ps = append(ps, "-x", "300")
					}
					if _, e, code := run(t, 15*time.Second, sub, args(append(ps, "-E")...)...); code != 0 {
						t.Fatalf("subscribe persistent: %s", e)
					}
					for i := 1; i <= 3; i++ {
						if _, e, code := run(t, 10*time.Second, pub, args("-t", "mq/v"+v+"/queue", "-q", "1", "-m", "queued"+strconv.Itoa(i))...); code != 0 {
							t.Fatal(e)
						}
					}
					out, e, code := run(t, 20*time.Second, sub, args(append(ps, "-C", "3", "-W", "10")...)...)
					if code != 0 || strings.Fields(out) == nil || strings.Join(strings.Fields(out), ",") != "queued1,queued2,queued3" {
						t.Fatalf("persistent session delivered %q (exit %d) %s", out, code, e)
					}
				})
			}
			for _, sc := range []string{"qos", "share", "alias_expiry"} {
				t.Run("paho-"+sc, func(t *testing.T) {
					out, e, code := run(t, 60*time.Second, py, "testdata/paho_interop.py", sc, host, port)
					if code != 0 || !strings.Contains(out, "ok") {
						t.Fatalf("%s%s (exit %d)", out, e, code)
					}
				})
			}
			// WebSocket is exercised with paho only: mosquitto_pub and
			// mosquitto_sub have no WebSocket transport.
			t.Run("paho-websocket", func(t *testing.T) {
				ws := listenerOf(t, lns, "ws")
				h, p := hostPort(t, ws)
				out, e, code := run(t, 60*time.Second, py, "testdata/paho_interop.py", "qos", h, p, "--transport", "websockets", "--ws-path", ws.Path)
				if code != 0 || !strings.Contains(out, "ok") {
					t.Fatalf("%s%s (exit %d)", out, e, code)
				}
			})
		})
	}
}
