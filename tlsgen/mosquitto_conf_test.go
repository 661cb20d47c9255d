package tlsgen

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/ui"
)

// TestPrintedMosquittoSetupWorksAsServiceUser takes the mosquitto block
// `mqtk tlsgen` prints and does what it says, as on a Debian machine: runs
// the install commands (as root, without sudo, into a scratch copy of
// /etc/mosquitto/certs), writes the printed mosquitto.conf lines with no
// `user` line, starts mosquitto as root so that it drops to the user
// mosquitto before loading the certificates, and connects with
// mosquitto_pub and the client certificate.
func TestPrintedMosquittoSetupWorksAsServiceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mosquitto must start as root to drop to the user mosquitto, as Debian's service does (CI runs the tests as root)")
	}
	mosq, err := user.Lookup("mosquitto")
	if err != nil {
		t.Skipf("there is no user mosquitto to drop to (apt-get install mosquitto creates it): %v", err)
	}
	bin := mosquittotest.Require(t)
	pubBin, _ := mosquittotest.RequireClients(t)

	dir := filepath.Join(t.TempDir(), "certs")
	out, _ := mustRun(t, Options{Dir: dir})
	installs, conf := printedMosquittoSetup(t, out)

	// A stand-in for /etc that the user mosquitto can traverse, as it can
	// /etc; the certificate directory itself comes from install -D.
	root, err := os.MkdirTemp("", "mqtk-etc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(root, "etc", "mosquitto", "certs")
	for _, line := range installs {
		cmd := strings.ReplaceAll(strings.TrimPrefix(line, "sudo "), mosquittoCertDir, certDir)
		if o, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
			t.Fatalf("printed command %q failed: %v\n%s", cmd, err, o)
		}
	}
	st, err := os.Stat(filepath.Join(certDir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if gid := strconv.Itoa(int(st.Sys().(*syscall.Stat_t).Gid)); st.Mode().Perm() != 0o640 || gid != mosq.Gid {
		t.Errorf("installed key: mode %o, group %s; want 0640, group mosquitto (%s)", st.Mode().Perm(), gid, mosq.Gid)
	}

	port := mosquittotest.FreePort(t)
	var c strings.Builder
	sawListener := false
	for _, l := range conf {
		if l == "listener 8883" {
			// Loopback only, on a free port.
			l, sawListener = fmt.Sprintf("listener %d 127.0.0.1", port), true
		}
		c.WriteString(strings.ReplaceAll(l, mosquittoCertDir, certDir) + "\n")
	}
	if !sawListener {
		t.Fatalf("no \"listener 8883\" line in the printed configuration %q", conf)
	}
	c.WriteString("log_dest stderr\n") // for the failure messages; deliberately no user line
	confFile := filepath.Join(root, "mosquitto.conf")
	if err := os.WriteFile(confFile, []byte(c.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	logs := startMosquittoAsRoot(t, bin, confFile, port)
	if uid := processUID(t, logs.pid); uid != mosq.Uid {
		t.Fatalf("mosquitto runs as uid %s, not the user mosquitto (%s): the test would prove nothing", uid, mosq.Uid)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o, err := exec.CommandContext(ctx, pubBin, "-h", "localhost", "-p", strconv.Itoa(port),
		"--cafile", filepath.Join(dir, CAFile), "--cert", filepath.Join(dir, "client.pem"), "--key", filepath.Join(dir, "client-key.pem"),
		"-t", "test/hello", "-m", "hello", "-q", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub with the client certificate: %v\n%s\nmosquitto.conf:\n%s\nmosquitto log:\n%s", err, o, c.String(), logs.String())
	}
	if !strings.Contains(logs.String(), "u'"+DefaultClientCN+"'") {
		t.Errorf("mosquitto did not take the certificate CN as the user name:\n%s", logs.String())
	}
}

// printedMosquittoSetup returns the install commands and the
// mosquitto.conf lines from the summary, unindented.
func printedMosquittoSetup(t *testing.T, out string) (installs, conf []string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "Or serve them from mosquitto") {
			start = i
		}
	}
	if start < 0 {
		t.Fatalf("no mosquitto block in:\n%s", out)
	}
	inConf := false
	for _, l := range lines[start+1:] {
		switch {
		case strings.HasPrefix(l, "  sudo install "):
			installs = append(installs, strings.TrimSpace(l))
		case strings.HasPrefix(l, "then put these lines in "):
			inConf = true
		case inConf && strings.HasPrefix(l, "  "):
			conf = append(conf, strings.TrimSpace(l))
		case inConf:
			inConf = false
		}
	}
	if len(installs) != 2 || len(conf) == 0 {
		t.Fatalf("install commands %q, configuration %q in:\n%s", installs, conf, out)
	}
	return installs, conf
}

// mosquittoLog collects a mosquitto's stderr while the test reads it.
type mosquittoLog struct {
	ui.SyncBuffer
	pid int
}

// startMosquittoAsRoot runs mosquitto -c conf, waits (boundedly) until it
// accepts connections on port and stops it when the test ends.
// mosquittotest.Start is not used: it adds a user line.
func startMosquittoAsRoot(t *testing.T, bin, conf string, port int) *mosquittoLog {
	t.Helper()
	logs := &mosquittoLog{}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	logs.pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for range 200 {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return logs
		}
		select {
		case <-exited:
			t.Fatalf("mosquitto exited at start:\n%s", logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("mosquitto not listening on %s:\n%s", addr, logs.String())
	return nil
}

// processUID returns the real uid of a running process.
func processUID(t *testing.T, pid int) string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the status of mosquitto: %v", err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return ""
}
