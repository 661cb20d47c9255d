// Package mosquittotest starts Debian's mosquitto broker for tests, on free
// loopback ports with a configuration the test writes, and stops it when the
// test ends. Tests that need it skip with a clear message when the mosquitto
// binary is absent; .ci/run installs it so that CI never skips.
package mosquittotest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Listener is one mosquitto listener.
type Listener struct {
	// WebSockets makes this a "protocol websockets" listener.
	WebSockets bool
	// Unix makes this a unix-socket listener (listener 0 PATH).
	Unix bool
	// TLS, when set, turns the listener into an MQTTS/WSS one.
	TLS *TLS
	// Extra is appended verbatim after the listener line
	// (for example "max_keepalive 30").
	Extra string
}

// TLS names the server's certificate files and client-certificate policy.
type TLS struct {
	CAFile, CertFile, KeyFile string
	RequireCertificate        bool
	UseIdentityAsUsername     bool
}

// Options configure one mosquitto process.
type Options struct {
	// Listeners; default one plain TCP listener.
	Listeners []Listener
	// Global is appended to the configuration before the listeners
	// (for example "password_file /x" or "persistence true").
	Global string
	// AllowAnonymous defaults to true unless PasswordFile is set.
	PasswordFile string
	ACLFile      string
	// Persistence keeps state in DataDir (a temp dir when empty) so that a
	// Restart finds it again.
	Persistence bool
	DataDir     string
}

// Broker is a running mosquitto.
type Broker struct {
	t      testing.TB
	bin    string
	conf   string
	Dir    string   // scratch directory holding the config and log
	Ports  []int    // one per listener; 0 for unix listeners
	Socket []string // unix socket paths, one per listener ("" for network ones)
	opts   Options

	mu  sync.Mutex
	cmd *exec.Cmd
	log *bytes.Buffer
}

// Binary returns the path of the mosquitto binary, or "" when absent.
func Binary() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Require skips the test when mosquitto is not installed.
func Require(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skip("mosquitto is not installed (apt-get install mosquitto); .ci/run installs it")
	}
	return bin
}

// RequireClients skips the test when mosquitto_pub/mosquitto_sub are absent
// and returns their paths.
func RequireClients(t testing.TB) (pub, sub string) {
	t.Helper()
	pub, err1 := exec.LookPath("mosquitto_pub")
	sub, err2 := exec.LookPath("mosquitto_sub")
	if err1 != nil || err2 != nil {
		t.Skip("mosquitto_pub/mosquitto_sub are not installed (apt-get install mosquitto-clients); .ci/run installs them")
	}
	return pub, sub
}

// PasswordFile writes a password file holding user with password, made by
// Debian's mosquitto_passwd (the test is skipped when it is absent), and
// returns its path.
func PasswordFile(t testing.TB, user, password string) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("mosquitto_passwd is not installed (apt-get install mosquitto); .ci/run installs it")
	}
	file := filepath.Join(t.TempDir(), "passwd")
	if out, err := exec.Command(bin, "-c", "-b", file, user, password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	return file
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start writes a configuration, starts mosquitto and waits until every
// listener accepts connections. The broker is stopped when the test ends.
func Start(t testing.TB, o Options) *Broker {
	t.Helper()
	bin := Require(t)
	if len(o.Listeners) == 0 {
		o.Listeners = []Listener{{}}
	}
	dir, err := os.MkdirTemp("", "mosq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if o.Persistence && o.DataDir == "" {
		o.DataDir = filepath.Join(dir, "data")
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	b := &Broker{t: t, bin: bin, Dir: dir, conf: filepath.Join(dir, "mosquitto.conf"), opts: o}
	var c strings.Builder
	c.WriteString("per_listener_settings false\n")
	// Started as root, mosquitto drops to the "mosquitto" user, which then
	// cannot write sockets or persistence files into our scratch directory.
	// Staying the current user keeps everything inside the test's reach.
	if u, err := user.Current(); err == nil {
		fmt.Fprintf(&c, "user %s\n", u.Username)
	}
	if o.PasswordFile != "" {
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", o.PasswordFile)
	} else {
		c.WriteString("allow_anonymous true\n")
	}
	if o.ACLFile != "" {
		fmt.Fprintf(&c, "acl_file %s\n", o.ACLFile)
	}
	if o.Persistence {
		fmt.Fprintf(&c, "persistence true\npersistence_location %s/\nautosave_interval 1\nautosave_on_changes true\n", o.DataDir)
	}
	c.WriteString("log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
	c.WriteString(o.Global + "\n")
	for i, l := range o.Listeners {
		port, sock := 0, ""
		if l.Unix {
			// Unix socket paths are limited to about 100 bytes: keep it short.
			sock = filepath.Join(dir, fmt.Sprintf("s%d", i))
			fmt.Fprintf(&c, "listener 0 %s\n", sock)
		} else {
			port = FreePort(t)
			fmt.Fprintf(&c, "listener %d 127.0.0.1\n", port)
		}
		if l.WebSockets {
			c.WriteString("protocol websockets\n")
		}
		if l.TLS != nil {
			fmt.Fprintf(&c, "cafile %s\ncertfile %s\nkeyfile %s\n", l.TLS.CAFile, l.TLS.CertFile, l.TLS.KeyFile)
			if l.TLS.RequireCertificate {
				c.WriteString("require_certificate true\n")
			}
			if l.TLS.UseIdentityAsUsername {
				c.WriteString("use_identity_as_username true\n")
			}
		}
		c.WriteString(l.Extra + "\n")
		b.Ports = append(b.Ports, port)
		b.Socket = append(b.Socket, sock)
	}
	if err := os.WriteFile(b.conf, []byte(c.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.Stop)
	return b
}

// Port returns the first listener's port.
func (b *Broker) Port() int { return b.Ports[0] }

// Addr returns "127.0.0.1:PORT" of listener i.
func (b *Broker) Addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", b.Ports[i]) }

// Log returns what mosquitto has logged so far.
func (b *Broker) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.log == nil {
		return ""
	}
	return b.log.String()
}

func (b *Broker) start() {
	b.t.Helper()
	cmd := exec.Command(b.bin, "-c", b.conf)
	buf := &bytes.Buffer{}
	cmd.Stdout = &lockedWriter{mu: &b.mu, w: buf}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	b.mu.Lock()
	b.cmd, b.log = cmd, buf
	b.mu.Unlock()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for i := range b.Ports {
		for {
			var conn net.Conn
			var err error
			if b.Socket[i] != "" {
				conn, err = net.DialTimeout("unix", b.Socket[i], time.Second)
			} else {
				conn, err = net.DialTimeout("tcp", b.Addr(i), time.Second)
			}
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-exited:
				b.t.Fatalf("mosquitto exited at start:\n%s", b.Log())
			default:
			}
			if time.Now().After(deadline) {
				b.t.Fatalf("mosquitto listener %d not ready after 10s:\n%s", i, b.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Stop ends mosquitto with SIGTERM (it saves persistent state) and waits.
func (b *Broker) Stop() { b.signal(syscall.SIGTERM) }

// Kill ends mosquitto with SIGKILL, as a crash would.
func (b *Broker) Kill() { b.signal(syscall.SIGKILL) }

func (b *Broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	cmd := b.cmd
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
}

// Restart starts mosquitto again with the same configuration and ports
// (after Stop or Kill).
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
