package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/gctune"
	"github.com/mqtk/mqtk/tlsgen"
)

const brokerLong = `Run an MQTT broker (MQTT 3.1, 3.1.1 and 5) for development and small deployments.

With no flags it listens on 127.0.0.1:1883 only, lets anyone on this machine
connect, keeps everything in memory, and prints how to reach it. Listening
where other machines can connect needs --password-file, --require-client-cert
or an explicit --allow-anonymous.

Listeners (--listen, repeatable): tcp://ADDR, tls://ADDR, ws://ADDR/path,
wss://ADDR/path, unix:///path. Port 0 picks a free port. --tls alone adds
MQTTS on port 8883 with certificates made (once) by 'mqtk tlsgen' under
$XDG_DATA_HOME/mqtk/tls; clients need the printed --cafile.

Users and permissions use mosquitto's files unchanged: --password-file from
mosquitto_passwd or 'mqtk broker passwd', --acl-file in mosquitto's
acl_file syntax (topic/user/pattern lines, %u and %c). Failed logins are
logged with the client address and answered after a delay.

--data DIR keeps retained messages, persistent sessions, their subscriptions
and their queued and in-flight QoS 1/2 messages across restarts, in one
file. A message is on disk before its publisher's acknowledgement, so a
crash or kill -9 loses nothing that was acknowledged; when the disk is
full the publish is refused (MQTT 5: reason 0x80; 3.1.1: the connection
closes) rather than acknowledged. A damaged store file stops the broker
at start with the file named; it is never rewritten.

Limits have defaults meant for a laptop or a small site and can all be
changed. Retained messages never expire unless the publisher set a message
expiry. SIGHUP reloads the password file, the ACL file and the TLS
certificates without dropping clients. SIGINT or SIGTERM stops cleanly:
MQTT 5 clients get DISCONNECT "server shutting down", the store is flushed,
and the exit code is 0.`

const brokerExample = `  # a local broker for development
  mqtk broker

  # watch every packet (coloured on a terminal; JSON lines with --log-format json)
  mqtk broker --trace

  # MQTTS on :8883 with certificates made for you, plus plain MQTT on loopback
  mqtk broker --tls

  # reachable from the LAN, with users, permissions and persistence
  mqtk broker passwd users.txt alice
  mqtk broker --listen tcp://0.0.0.0:1883 --password-file users.txt \
      --acl-file acl.txt --data /var/lib/mqtk

  # WebSocket for browsers, Prometheus metrics on :9100
  mqtk broker --listen tcp://127.0.0.1:1883 --listen ws://127.0.0.1:8080/mqtt --http 127.0.0.1:9100

  # mutual TLS; the certificate's common name becomes the user name
  mqtk broker --listen tls://:8883 --tls-cert server.pem --tls-key server-key.pem \
      --tls-ca ca.pem --require-client-cert --cert-as-username

  # keep the settings in a file; flags still override it
  mqtk broker --print-config > broker.yaml
  mqtk broker --config broker.yaml`

func newBrokerCmd(a *app, runF func(*broker.Options) error) *cobra.Command {
	cfg := broker.DefaultConfig()
	var configFile string
	var printConfig bool
	cmd := &cobra.Command{
		Use:     "broker",
		Short:   "Run a local MQTT broker: TLS, WebSocket, users, ACL, persistence, trace",
		Long:    brokerLong,
		Example: brokerExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			eff, err := effectiveBrokerConfig(cmd, cfg, configFile)
			if err != nil {
				return classifyBrokerErr(err)
			}
			if printConfig {
				out, err := yaml.Marshal(eff)
				if err != nil {
					return fmt.Errorf("print config: %w", err)
				}
				_, err = a.io.Out.Write(out)
				return err
			}
			// --tls names its certificate files here and makes them in
			// runBroker, after the seam, so that runF sees the options
			// without anything written.
			localTLS := ""
			if eff.TLS {
				if localTLS, err = tlsDir(a.getenv); err != nil {
					return err
				}
				f := tlsgen.LocalPaths(localTLS)
				eff.AddLocalTLS(f.CertFile, f.KeyFile, f.CAFile)
			}
			opts := eff.Options
			// Every limit was filled in from the defaults, the file or a
			// flag, so a zero in them was meant (--auth-fail-delay 0).
			opts.ExactLimits = true
			opts.Log = a.io.Err
			opts.Color = a.io.Err.Color()
			if runF != nil {
				return runF(&opts)
			}
			return runBroker(cmd.Context(), a, opts, localTLS)
		},
	}
	bindBrokerFlags(cmd.Flags(), &cfg)
	cmd.Flags().StringVar(&configFile, "config", "", "read settings from `FILE.yaml` (keys are the flag names); flags override it")
	cmd.Flags().BoolVar(&printConfig, "print-config", false, "print the effective configuration as YAML and exit")
	cmd.Flags().SortFlags = false
	cmd.AddCommand(newBrokerPasswdCmd(a))
	return cmd
}

// bindBrokerFlags binds every configurable flag to c, using c's current
// values as defaults. It is called twice: once for the command line, once
// over the config file's values to replay the flags that were set.
func bindBrokerFlags(fs *pflag.FlagSet, c *broker.Config) {
	o := &c.Options
	l := &o.Limits
	fs.StringArrayVar(&o.Listeners, "listen", o.Listeners, "listen on `URL`: tcp://ADDR, tls://ADDR, ws://ADDR/path, wss://ADDR/path, unix:///path (repeatable; default tcp://127.0.0.1:1883)")
	fs.BoolVar(&c.TLS, "tls", c.TLS, "also serve MQTTS on :8883 (and wss with ws) using certificates from 'mqtk tlsgen', made on first use")
	fs.StringVar(&o.TLSCert, "tls-cert", o.TLSCert, "server certificate `FILE` (PEM) for tls:// and wss://")
	fs.StringVar(&o.TLSKey, "tls-key", o.TLSKey, "server private key `FILE` (PEM)")
	fs.StringVar(&o.TLSCA, "tls-ca", o.TLSCA, "CA certificate `FILE` that signs client certificates (enables mutual TLS)")
	fs.BoolVar(&o.RequireClientCert, "require-client-cert", o.RequireClientCert, "refuse TLS clients without a certificate signed by --tls-ca")
	fs.BoolVar(&o.CertAsUsername, "cert-as-username", o.CertAsUsername, "use the client certificate's common name as the user name (no password needed)")
	fs.StringVar(&o.PasswordFile, "password-file", o.PasswordFile, "mosquitto password `FILE` (mosquitto_passwd or 'mqtk broker passwd')")
	fs.BoolVar(&o.AllowAnonymous, "allow-anonymous", o.AllowAnonymous, "let clients without a user name connect even with a password file or on a non-loopback address")
	fs.StringVar(&o.ACLFile, "acl-file", o.ACLFile, "mosquitto ACL `FILE`: topic/user/pattern lines")
	fs.StringVar(&o.DataDir, "data", o.DataDir, "keep retained messages and persistent sessions in `DIR` across restarts")
	fs.Uint32Var(&l.MaxPacketSize, "max-packet-size", l.MaxPacketSize, "largest packet in `BYTES`; a client sending more is disconnected")
	fs.Int64Var(&l.MaxClients, "max-clients", l.MaxClients, "most connected clients")
	fs.Uint16Var(&l.MaxInflight, "max-inflight", l.MaxInflight, "QoS 1/2 messages stored per client, in flight and queued while offline")
	fs.Int32Var(&l.MaxQueued, "max-queued", l.MaxQueued, "packets waiting to be written per connected client; publishers wait while it is nearly full; for a client that stops reading, the oldest QoS 0 message is dropped first, or the new one while QoS 1/2 messages to it are unacknowledged (every drop is counted)")
	fs.Uint16Var(&l.ReceiveMaximum, "receive-maximum", l.ReceiveMaximum, "unacknowledged QoS 1/2 publishes a client may send at once")
	fs.DurationVar(&l.MaxMessageExpiry, "max-message-expiry", l.MaxMessageExpiry, "ceiling on message expiry (0: none, retained messages live until cleared)")
	fs.DurationVar(&l.MaxSessionExpiry, "max-session-expiry", l.MaxSessionExpiry, "how long a disconnected persistent session is kept (0: sessions end with their connection)")
	fs.Uint16Var(&l.MaxKeepalive, "max-keepalive", l.MaxKeepalive, "largest keepalive in `SECONDS`; MQTT 5 clients are told it (Server Keep Alive), longer 3.1.1 ones are refused")
	fs.IntVar(&l.MaxTopicLength, "max-topic-length", l.MaxTopicLength, "longest topic name or filter in bytes")
	fs.IntVar(&l.MaxTopicLevels, "max-topic-levels", l.MaxTopicLevels, "most levels in a topic name or filter")
	fs.IntVar(&l.MaxClientIDLength, "max-client-id-length", l.MaxClientIDLength, "longest client id in bytes")
	fs.Uint16Var(&l.TopicAliasMaximum, "topic-alias-max", l.TopicAliasMaximum, "topic aliases an MQTT 5 client may set up towards the broker (0: none)")
	fs.Uint16Var(&l.TopicAliasOutMaximum, "topic-alias-out-max", l.TopicAliasOutMaximum, "topic aliases the broker assigns in messages to an MQTT 5 client, never more than the client allows (0: none)")
	fs.IntVar(&l.ReadBufferSize, "read-buffer-size", l.ReadBufferSize, "a connection's first read buffer in bytes (it grows for large packets and is let go when idle)")
	fs.IntVar(&l.WriteBufferSize, "write-buffer-size", l.WriteBufferSize, "largest write buffer a busy connection keeps between writes, in bytes")
	fs.DurationVar(&l.ConnectTimeout, "connect-timeout", l.ConnectTimeout, "drop connections that send no CONNECT within this time")
	fs.DurationVar(&l.WriteTimeout, "write-timeout", l.WriteTimeout, "drop clients that stop reading for this long")
	fs.DurationVar(&l.AuthFailDelay, "auth-fail-delay", l.AuthFailDelay, "pause before answering a failed login (0: none)")
	fs.BoolVar(&o.Trace, "trace", o.Trace, "print every packet in and out on stderr")
	fs.StringVar(&o.LogFormat, "log-format", o.LogFormat, "log and trace format: text or json (default text)")
	fs.StringVar(&o.HTTPAddr, "http", o.HTTPAddr, "serve /metrics (Prometheus), /healthz, /api/clients and /api/subscriptions on `ADDR` (a loopback address: they have no authentication)")
	fs.BoolVar(&o.Pprof, "pprof", o.Pprof, "also serve /debug/pprof on the --http address")
}

// effectiveBrokerConfig merges defaults < config file < flags and fills
// in every default (broker.Config.Complete).
func effectiveBrokerConfig(cmd *cobra.Command, flags broker.Config, file string) (broker.Config, error) {
	eff := flags
	if file != "" {
		fromFile, err := broker.ReadConfig(file)
		if err != nil {
			return eff, err
		}
		// Replay the flags given on the command line over the file's values.
		fs := pflag.NewFlagSet("merge", pflag.ContinueOnError)
		bindBrokerFlags(fs, &fromFile)
		var setErr error
		cmd.Flags().Visit(func(f *pflag.Flag) {
			target := fs.Lookup(f.Name)
			if target == nil || setErr != nil {
				return
			}
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				setErr = target.Value.(pflag.SliceValue).Replace(sv.GetSlice())
				return
			}
			setErr = target.Value.Set(f.Value.String())
		})
		if setErr != nil {
			return eff, clierr.Usagef("merge flags over config: %v", setErr)
		}
		eff = fromFile
	}
	return eff, eff.Complete()
}

// tlsDir is where 'mqtk broker --tls' keeps its certificates.
func tlsDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "mqtk", "tls"), nil
	}
	home := getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find a place for tls certificates: %w (set XDG_DATA_HOME)", err)
		}
		home = h
	}
	return filepath.Join(home, ".local", "share", "mqtk", "tls"), nil
}

// makeLocalTLS makes or reuses the certificates of --tls in dir and says
// when it made new ones, since clients then need the CA.
func makeLocalTLS(a *app, dir string) (tlsgen.LocalFiles, error) {
	files, err := tlsgen.EnsureLocal(dir)
	if err != nil {
		return files, fmt.Errorf("prepare tls certificates in %s: %w", dir, err)
	}
	switch {
	case files.CACreated:
		a.io.Infof("made a local CA and server certificate in %s; clients trust it with --cafile %s", dir, files.CAFile)
	case files.Created:
		a.io.Infof("reissued the server certificate in %s from its CA (clients keep --cafile %s)", dir, files.CAFile)
	}
	return files, nil
}

// runBroker makes the --tls certificates in localTLS (when not ""), then
// runs the broker until ctx ends: the banner once it listens, the GC
// tuning, and a reload on each SIGHUP.
func runBroker(ctx context.Context, a *app, opts broker.Options, localTLS string) error {
	caFile := ""
	if localTLS != "" {
		files, err := makeLocalTLS(a, localTLS)
		if err != nil {
			return err
		}
		caFile = files.CAFile
	}
	opts.Version, _, _ = buildInfo()
	var stopTuning func()
	err := broker.Run(ctx, opts, func(ctx context.Context, b *broker.Broker) {
		printBanner(a, b, opts, caFile)
		stopTuning = tuneGC(ctx, a)
		reloadOnHangup(ctx, a, b)
		a.io.Infof("stopping")
	})
	if stopTuning != nil {
		stopTuning() // after Close, as the broker's last garbage goes
	}
	return classifyBrokerErr(err)
}

// tuneGC starts the GC tuning unless the user set GOGC; the returned func
// stops it and waits for it.
func tuneGC(ctx context.Context, a *app) func() {
	if a.getenv("GOGC") != "" {
		return func() {}
	}
	// A larger GC target while the heap is small cuts the latency tail,
	// and a soft memory limit keeps an idle broker's garbage small; a
	// GOGC or GOMEMLIMIT the user set wins.
	gctx, stop := context.WithCancel(ctx)
	tuned := make(chan struct{})
	policy := gctune.Default()
	if a.getenv("GOMEMLIMIT") != "" {
		policy.Headroom = 0
	}
	go func() {
		defer close(tuned)
		gctune.Run(gctx, policy, gctune.ReadMemory, debug.SetGCPercent, debug.SetMemoryLimit)
	}()
	return func() { stop(); <-tuned }
}

// reloadOnHangup reloads the password file, the ACL and the certificates
// on each SIGHUP until ctx ends. The handler is scoped to this command,
// so other commands keep the default (terminate) behaviour.
func reloadOnHangup(ctx context.Context, a *app, b *broker.Broker) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-hup:
			if err := b.Reload(); err != nil {
				a.io.Errorf("%v", err)
				a.io.Hintf("the previous settings stay in force; fix the file and send SIGHUP again")
			}
		case <-ctx.Done():
		}
	}
}

// classifyBrokerErr makes an error in the options a usage error (exit 2)
// with the broker's hint, and leaves the rest (a data directory that is
// locked or cannot be created) runtime errors (exit 1).
func classifyBrokerErr(err error) error {
	var oe *broker.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	e := &clierr.Error{Kind: clierr.KindUsage, Err: err}
	if oe.Hint != "" {
		e.Hints = []string{oe.Hint}
	}
	return e
}

// printBanner tells a newcomer where the broker is and how to use it.
func printBanner(a *app, b *broker.Broker, opts broker.Options, caFile string) {
	a.io.Infof("broker ready (MQTT 3.1, 3.1.1 and 5), listening on:")
	var first *broker.Listener
	lns := b.Listeners()
	for i, l := range lns {
		extra := ""
		if (l.Scheme == "tls" || l.Scheme == "wss") && caFile != "" {
			extra = "   (clients need --cafile " + caFile + ")"
		}
		a.io.Infof("  %s%s", l.URL(), extra)
		if first == nil && (l.Scheme == "tcp" || l.Scheme == "unix") {
			first = &lns[i]
		}
	}
	if first == nil && len(lns) > 0 {
		first = &lns[0]
	}
	if addr := b.HTTPAddr(); addr != "" {
		a.io.Infof("  http://%s/metrics, /healthz, /api/clients, /api/subscriptions", addr)
	}
	if opts.DataDir != "" {
		a.io.Infof("persisting to %s", opts.DataDir)
	}
	if first != nil {
		conn, notes := "-L "+first.URL(), []string(nil)
		if first.Scheme == "tls" || first.Scheme == "wss" {
			switch {
			case caFile != "":
				conn += " --cafile " + caFile
			case opts.TLSCA != "":
				conn += " --cafile " + opts.TLSCA
			default:
				// A private CA is the usual case; a client without it
				// fails verification, so the line says what to add.
				conn += " --cafile CA.pem"
				notes = append(notes, "CA.pem: the CA certificate that signed "+opts.TLSCert+" (leave --cafile out if a public CA signed it)")
			}
			if opts.RequireClientCert {
				conn += " --cert CLIENT.pem --key CLIENT-key.pem"
				notes = append(notes, "CLIENT.pem, CLIENT-key.pem: a client certificate signed by "+opts.TLSCA+" and its key ('mqtk tlsgen client NAME' makes one)")
			}
		}
		if opts.PasswordFile != "" && !opts.AllowAnonymous {
			conn += " -u USER -P PASSWORD"
		}
		a.io.Infof("try it in another terminal:")
		a.io.Infof("  mqtk sub %s -t 'hello/#' -v", conn)
		a.io.Infof("  mqtk pub %s -t hello/world -m 'hi there'", conn)
		for _, n := range notes {
			a.io.Infof("  (%s)", n)
		}
	}
	a.io.Infof("press Ctrl-C to stop")
}
