package broker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
)

// streamProc is a long-running client (mosquitto_sub, a paho script) whose
// output lines the test reads while it runs. mosquitto_sub -d prints
// "received SUBACK" once it is subscribed, which is the signal the tests
// wait for before publishing.
type streamProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the output reached EOF

	mu    sync.Mutex
	lines []string
}

// startStream starts name with args, stdout and stderr merged; cleanup
// kills it if it is still running.
func startStream(t *testing.T, name string, args ...string) *streamProc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &streamProc{name: filepath.Base(name), cmd: exec.Command(name, args...), done: make(chan struct{})}
	// mosquitto_sub prints its -d lines through a buffered stdout, which
	// a pipe would hold back until exit: ask for line buffering.
	if sb, err := exec.LookPath("stdbuf"); err == nil {
		p.cmd = exec.Command(sb, append([]string{"-oL", name}, args...)...)
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	w.Close()
	go func() {
		defer close(p.done)
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.kill(t, syscall.SIGKILL) })
	return p
}

func (p *streamProc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// waitFor waits up to 15 s for an output line containing s and returns the
// lines so far.
func (p *streamProc) waitFor(t *testing.T, s string) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		lines := p.output()
		for _, l := range lines {
			if strings.Contains(l, s) {
				return lines
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no line containing %q within 15s:\n%s", p.name, s, strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exited reports whether the process has ended (its output is closed).
func (p *streamProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill signals the process (if still running) and waits up to 10 s for it.
func (p *streamProc) kill(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not exit within 10s of %v", p.name, sig)
	}
	_ = p.cmd.Wait()
}

// runIn is run with stdin.
func runIn(t *testing.T, d time.Duration, stdin, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out.String(), errb.String(), 0
}

// runPaho runs one scenario of testdata/paho_interop.py and fails the test
// unless it printed ok.
func runPaho(t *testing.T, py, scenario, host, port string, extra ...string) {
	t.Helper()
	args := append([]string{"testdata/paho_interop.py", scenario, host, port}, extra...)
	out, e, code := run(t, 90*time.Second, py, args...)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("paho %s %v: %s%s(exit %d)", scenario, extra, out, e, code)
	}
}

// TestInteropMatrix fills the rest of the interop matrix, against
// the broker in-process and as the real `mqtk broker` process: paho
// retained and persistent sessions, wills on abnormal disconnect with
// mosquitto_sub and paho, $share groups of mosquitto_sub, and MQTT 5 topic
// aliases and message expiry sent by mosquitto_pub. QoS 0/1/2 and the
// mosquitto retained and persistent-session cases are in TestInteropClients.
func TestInteropMatrix(t *testing.T) {
	pub, sub := mosquittotest.RequireClients(t)
	py := requirePython(t)
	for _, kind := range brokerKinds {
		t.Run(kind.name, func(t *testing.T) {
			lns := kind.start(t, Options{Listeners: []string{"tcp://127.0.0.1:0"}})
			host, port := hostPort(t, listenerOf(t, lns, "tcp"))
			for _, v := range []string{"311", "5"} {
				tag := kind.name + "-v" + v
				mq := func(extra ...string) []string {
					return append([]string{"-h", host, "-p", port, "-V", v}, extra...)
				}
				for _, sc := range []string{"retained", "persist"} {
					t.Run("paho-v"+v+"-"+sc, func(t *testing.T) {
						runPaho(t, py, sc, host, port, "--version", v, "--tag", tag)
					})
				}
				t.Run("paho-v"+v+"-will", func(t *testing.T) {
					topic := "paho/will/" + tag
					watch := startStream(t, sub, mq("-t", topic, "-q", "1", "-v", "-d")...)
					watch.waitFor(t, "received SUBACK")
					willer := startStream(t, py, "testdata/paho_interop.py", "will", host, port, "--version", v, "--tag", tag)
					willer.waitFor(t, "READY")
					willer.kill(t, syscall.SIGKILL) // no DISCONNECT: the will is due
					watch.waitFor(t, topic+" gone")
				})
				t.Run("mosquitto-v"+v+"-will", func(t *testing.T) {
					topic := "mq/will/" + tag
					watch := startStream(t, sub, mq("-t", topic, "-q", "1", "-v", "-d")...)
					watch.waitFor(t, "received SUBACK")
					willer := startStream(t, sub, mq("-t", "mq/idle/"+tag, "-d",
						"--will-topic", topic, "--will-payload", "gone", "--will-qos", "1")...)
					willer.waitFor(t, "received SUBACK")
					willer.kill(t, syscall.SIGKILL)
					watch.waitFor(t, topic+" gone")
				})
				t.Run("mosquitto-v"+v+"-share", func(t *testing.T) {
					topic := "share/" + tag
					var members []*streamProc
					for i := 0; i < 2; i++ {
						m := startStream(t, sub, mq("-t", "$share/g/"+topic, "-q", "1", "-v", "-d", "-i", fmt.Sprintf("share-%s-%d", tag, i))...)
						m.waitFor(t, "received SUBACK")
						members = append(members, m)
					}
					const n = 10
					var in strings.Builder
					for i := 0; i < n; i++ {
						fmt.Fprintf(&in, "m%d\n", i)
					}
					if _, e, code := runIn(t, 15*time.Second, in.String(), pub, mq("-t", topic, "-q", "1", "-l")...); code != 0 {
						t.Fatalf("mosquitto_pub -l: exit %d: %s", code, e)
					}
					got := make([][]string, len(members))
					deadline := time.Now().Add(15 * time.Second)
					for {
						total := 0
						for i, m := range members {
							got[i] = got[i][:0]
							for _, l := range m.output() {
								if p, ok := strings.CutPrefix(l, topic+" "); ok {
									got[i] = append(got[i], p)
								}
							}
							total += len(got[i])
						}
						if total >= n || time.Now().After(deadline) {
							break
						}
						time.Sleep(20 * time.Millisecond)
					}
					all := append(append([]string{}, got[0]...), got[1]...)
					sort.Strings(all)
					want := strings.Fields(strings.TrimSpace(in.String()))
					if strings.Join(all, ",") != strings.Join(want, ",") {
						t.Errorf("group delivered %v, want each of %v exactly once", all, want)
					}
					if len(got[0]) == 0 || len(got[1]) == 0 {
						t.Errorf("messages not split: member 1 got %v, member 2 got %v", got[0], got[1])
					}
				})
			}
			mq5 := func(extra ...string) []string {
				return append([]string{"-h", host, "-p", port, "-V", "5"}, extra...)
			}
			// With -l and a topic-alias property, libmosquitto sends the
			// first PUBLISH with the topic and alias 1, and every later
			// one with alias 1 and an empty topic: both must arrive under
			// the full topic.
			t.Run("mosquitto-v5-topic-alias", func(t *testing.T) {
				topic := "alias/mq/" + kind.name
				watch := startStream(t, sub, mq5("-t", topic, "-q", "1", "-v", "-d")...)
				watch.waitFor(t, "received SUBACK")
				out, e, code := runIn(t, 15*time.Second, "first\nsecond\n", pub, mq5("-t", topic, "-q", "1", "-l", "-d", "-D", "publish", "topic-alias", "1")...)
				if code != 0 {
					t.Fatalf("mosquitto_pub: exit %d: %s%s", code, out, e)
				}
				if !regexp.MustCompile(`sending PUBLISH \([^)]*m2, '\(null\)'`).MatchString(out) {
					t.Fatalf("mosquitto_pub did not send the second message by alias only:\n%s", out)
				}
				for _, mid := range []string{"1", "2"} {
					if !strings.Contains(out, "received PUBACK (Mid: "+mid+", RC:0)") {
						t.Errorf("PUBACK %s not successful:\n%s", mid, out)
					}
				}
				watch.waitFor(t, topic+" second")
				var got []string
				for _, l := range watch.output() {
					if strings.HasPrefix(l, topic+" ") {
						got = append(got, l)
					}
				}
				if strings.Join(got, "|") != topic+" first|"+topic+" second" {
					t.Errorf("subscriber got %q", got)
				}
			})
			// A message that expires while a persistent session's client
			// is offline is not delivered when it returns; one that has
			// not expired is.
			t.Run("mosquitto-v5-message-expiry", func(t *testing.T) {
				topic, id := "exp/mq/"+kind.name, "mq-exp-"+kind.name
				session := mq5("-c", "-i", id, "-x", "300", "-q", "1", "-t", topic+"/#")
				if _, e, code := run(t, 15*time.Second, sub, append(session, "-E")...); code != 0 {
					t.Fatalf("subscribe: exit %d: %s", code, e)
				}
				for _, m := range []struct{ sub, expiry string }{{"short", "1"}, {"long", "300"}} {
					if _, e, code := run(t, 15*time.Second, pub, mq5("-t", topic+"/"+m.sub, "-q", "1", "-m", m.sub, "-D", "publish", "message-expiry-interval", m.expiry)...); code != 0 {
						t.Fatalf("publish %s: exit %d: %s", m.sub, code, e)
					}
				}
				// Expiry counts whole seconds, and a broker may drop
				// expired queued messages in a sweep once a second: 4 s
				// is past both whatever the phase, and far inside the
				// 300 s expiry.
				time.Sleep(4 * time.Second)
				// Queued messages come back in order, so "short" would
				// arrive first if it had not expired.
				out, e, code := run(t, 15*time.Second, sub, append(session, "-v", "-C", "1", "-W", "10")...)
				if code != 0 || strings.TrimSpace(out) != topic+"/long long" {
					t.Fatalf("reconnected session got %q (exit %d, %s), want only %s/long", out, code, e, topic)
				}
				run(t, 15*time.Second, sub, mq5("-i", id, "-x", "0", "-t", topic, "-E")...) // end the session
			})
		})
	}
}
