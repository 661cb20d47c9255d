package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/internal/mosquittotest"
)

// TestMain makes the test binary double as the mqtk command for the
// testscript scripts (the "mqtk" command inside a script re-executes this
// binary, which then runs run() exactly as main does), and checks the
// in-process tests for leaked goroutines.
func TestMain(m *testing.M) {
	testscript.Main(leakCheckM{m}, map[string]func(){
		"mqtk": func() { os.Exit(run()) },
	})
}

// leakCheckM runs the tests, then goleak, only in the test process (never
// when this binary is acting as mqtk inside a script).
type leakCheckM struct{ m *testing.M }

func (l leakCheckM) Run() int {
	code := l.m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

// TestScripts runs testdata/script/*.txtar. Each script gets its own
// Debian mosquitto on a free loopback port, in $BROKER_HOST, $BROKER_PORT and
// $BROKER_URL, plus $CLOSED_PORT, a port nothing listens on, and
// $FREE_PORT1..3 for listeners a script starts itself. Scripts that need
// the broker start with [!mosquitto] skip.
func TestScripts(t *testing.T) {
	bin := mosquittotest.Binary()
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "mosquitto":
				return bin != "", nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": cmdExits,
		},
		Setup: func(env *testscript.Env) error {
			closed, err := freePort()
			if err != nil {
				return err
			}
			env.Setenv("CLOSED_PORT", fmt.Sprint(closed))
			// Spare ports for scripts that start their own listeners.
			for i := 1; i <= 3; i++ {
				p, err := freePort()
				if err != nil {
					return err
				}
				env.Setenv(fmt.Sprintf("FREE_PORT%d", i), fmt.Sprint(p))
			}
			env.Setenv("NO_COLOR", "1")
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, ".config"))
			if bin == "" {
				return nil
			}
			port, stop, err := startMosquitto(bin, env.WorkDir)
			if err != nil {
				return err
			}
			env.Defer(stop)
			env.Setenv("BROKER_HOST", "127.0.0.1")
			env.Setenv("BROKER_PORT", fmt.Sprint(port))
			env.Setenv("BROKER_URL", fmt.Sprintf("mqtt://127.0.0.1:%d", port))
			return nil
		},
	})
}

// cmdExits is "exits CODE PROG ARGS...": run PROG and require exactly
// that exit code, keeping stdout and stderr for the lines that follow.
// Plain "! exec" only proves the code was not zero; the exit-code table is
// part of mqtk's interface, so scripts check the number.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Logf("[stderr]\n%s", ts.ReadFile("stderr"))
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startMosquitto is mosquittotest.Start for testscript, whose Setup has no
// testing.TB: one anonymous TCP listener on a free loopback port.
func startMosquitto(bin, dir string) (port int, stop func(), err error) {
	port, err = freePort()
	if err != nil {
		return 0, nil, err
	}
	conf := fmt.Sprintf("per_listener_settings false\nallow_anonymous true\nlog_dest stderr\nlistener %d 127.0.0.1\n", port)
	if u, err := user.Current(); err == nil {
		conf = fmt.Sprintf("user %s\n", u.Username) + conf
	}
	path := filepath.Join(dir, ".mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(bin, "-c", path)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start mosquitto: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return port, stop, nil
		}
		select {
		case <-exited:
			return 0, nil, fmt.Errorf("mosquitto exited at start: %s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return 0, nil, fmt.Errorf("mosquitto not ready after 10s: %s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
