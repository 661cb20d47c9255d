package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/rogpeppe/go-internal/txtar"
	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/broker/brokertest"
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

// TestScripts runs testdata/script/*.txtar in two passes, one per broker
// under test, as subtests named after it:
//
//   - "mqtk": mqtk's own broker, started in this process for each script;
//     it runs every script, so a machine without Debian's mosquitto still
//     tests the clients end to end;
//   - "mosquitto": Debian's mosquitto, a process of its own for each
//     script; it runs the scripts that talk to a broker (see brokerScript)
//     and is skipped, naming the binary, when mosquitto is not installed.
//
// Each script gets its pass's broker (a fresh one: no retained messages or
// sessions from another script) on a free loopback port in
// $BROKER_HOST, $BROKER_PORT and $BROKER_URL, plus $CLOSED_PORT, a port
// nothing listens on, and $FREE_PORT1..3 for listeners a script starts
// itself. The conditions a script can test:
//
//	[mqtk]              this pass's broker is mqtk's
//	[mosquitto]         this pass's broker is Debian's mosquitto
//	[mosquitto-clients] mosquitto_pub, mosquitto_sub and mosquitto_rr are
//	                    installed (an independent client beside mqtk's)
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata/script: %v", err)
	}
	var brokered []string
	for _, f := range files {
		uses, err := brokerScript(f)
		if err != nil {
			t.Fatal(err)
		}
		if uses {
			brokered = append(brokered, f)
		}
	}
	clients := true
	for _, c := range []string{"mosquitto_pub", "mosquitto_sub", "mosquitto_rr"} {
		if _, err := exec.LookPath(c); err != nil {
			clients = false
		}
	}
	t.Run(brokertest.Mqtk, func(t *testing.T) {
		testscript.Run(t, scriptParams(brokertest.Mqtk, files, clients, startScriptBroker))
	})
	t.Run(brokertest.Mosquitto, func(t *testing.T) {
		bin := mosquittotest.Binary()
		if bin == "" {
			t.Skip("Debian's mosquitto is not installed (no mosquitto on PATH or in /usr/sbin: apt-get install mosquitto; .ci/run installs it); the scripts ran against mqtk's broker only")
		}
		testscript.Run(t, scriptParams(brokertest.Mosquitto, brokered, clients, func(env *testscript.Env) (int, error) {
			port, stop, err := startMosquitto(bin, env.WorkDir)
			if err != nil {
				return 0, err
			}
			env.Defer(stop)
			return port, nil
		}))
	})
}

// brokerScript reports whether the script in file talks to the broker
// under test: it names $BROKER_HOST, $BROKER_PORT or $BROKER_URL, or
// tests [mqtk] or [mosquitto] (a script that starts a broker of its own,
// chosen by the pass). A script that does neither needs no broker (usage
// errors, help, tlsgen, mqtk broker's own command line), so running it
// again in the mosquitto pass would test nothing new.
func brokerScript(file string) (bool, error) {
	a, err := txtar.ParseFile(file)
	if err != nil {
		return false, fmt.Errorf("read script: %w", err)
	}
	return regexp.MustCompile(`\$BROKER_|\[!?(mqtk|mosquitto)\]`).Match(a.Comment), nil
}

// scriptParams is the testscript setup both passes share. pass names the
// broker under test (brokertest.Mqtk or brokertest.Mosquitto);
// startBroker starts it for one script, stops it through env.Defer, and
// returns its port on 127.0.0.1.
func scriptParams(pass string, files []string, clients bool, startBroker func(*testscript.Env) (int, error)) testscript.Params {
	return testscript.Params{
		Files: files,
		Condition: func(cond string) (bool, error) {
			switch cond {
			case brokertest.Mqtk, brokertest.Mosquitto:
				return cond == pass, nil
			case "mosquitto-clients":
				return clients, nil
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
			// Under -race every mqtk a script runs is the race-enabled test
			// binary, which by default sleeps a second before exiting
			// (atexit_sleep_ms); that second, times a few hundred commands,
			// was most of the scripts' time. A race still fails the command
			// (exit 66).
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, ".config"))
			port, err := startBroker(env)
			if err != nil {
				return err
			}
			env.Setenv("BROKER_HOST", "127.0.0.1")
			env.Setenv("BROKER_PORT", fmt.Sprint(port))
			env.Setenv("BROKER_URL", fmt.Sprintf("mqtt://127.0.0.1:%d", port))
			return nil
		},
	}
}

// startScriptBroker starts mqtk's broker in the test's process for one
// script: one anonymous TCP listener on a free loopback port, closed when
// the script ends.
func startScriptBroker(env *testscript.Env) (int, error) {
	b, err := broker.New(broker.Options{
		Listeners:      []string{"tcp://127.0.0.1:0"},
		AllowAnonymous: true,
	})
	if err != nil {
		return 0, fmt.Errorf("mqtk broker: %w", err)
	}
	if err := b.Start(context.Background()); err != nil {
		return 0, fmt.Errorf("start mqtk broker: %w", err)
	}
	env.Defer(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			env.T().Fatal("close mqtk broker: ", err)
		}
	})
	addr := b.Listeners()[0].Addr
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("mqtk broker listener %q: %w", addr, err)
	}
	return strconv.Atoi(p)
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
