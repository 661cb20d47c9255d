package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/tlsgen"
)

// issueFlags are the flags shared by tlsgen, tlsgen ca/server/client.
type issueFlags struct {
	dir, keyType, p12Password, cn, out string
	days                               int
	force, fullchain, p12, p12Legacy   bool
	constraints                        []string
}

func (f *issueFlags) bind(cmd *cobra.Command, cmdKind tlsgen.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.dir, "dir", tlsgen.DefaultDir, "directory for the certificates and keys (the CA key goes in its private/ subdirectory, mode 0700)")
	fs.StringVar(&f.keyType, "key-type", string(tlsgen.ECDSAP256), "key algorithm: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519")
	if cmdKind == tlsgen.CmdCA {
		fs.IntVar(&f.days, "days", tlsgen.DefaultCADays, "days the CA is valid")
	} else {
		fs.IntVar(&f.days, "days", tlsgen.DefaultLeafDays, "days the certificates are valid (more than 825 is rejected by Apple platforms and browsers)")
	}
	fs.BoolVar(&f.force, "force", false, "overwrite existing files (replacing a CA breaks every certificate it signed)")
	if cmdKind == tlsgen.CmdCA || cmdKind == tlsgen.CmdAll {
		fs.StringSliceVar(&f.constraints, "name-constraint", nil, "make a CA that may sign only for this domain (or CIDR range); repeatable")
	}
	switch cmdKind {
	case tlsgen.CmdCA:
		fs.StringVar(&f.cn, "cn", "", "the CA's common name (default: mqtk local CA user@host)")
	case tlsgen.CmdAll:
		fs.StringVar(&f.cn, "cn", tlsgen.DefaultClientCN, "the client certificate's CN (the MQTT user name with use_identity_as_username)")
	case tlsgen.CmdServer, tlsgen.CmdClient:
		fs.StringVar(&f.out, "out", "", "base file name: writes NAME.pem and NAME-key.pem (default "+string(cmdKind)+")")
	}
	_ = cmd.RegisterFlagCompletionFunc("key-type", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return strings.Split(keyTypeNames(), ", "), cobra.ShellCompDirectiveNoFileComp
	})
	_ = cmd.MarkFlagDirname("dir")
	if cmdKind != tlsgen.CmdCA {
		fs.BoolVar(&f.fullchain, "fullchain", false, "also write NAME-fullchain.pem: the certificate followed by the CA")
		fs.BoolVar(&f.p12, "p12", false, "also write NAME.p12, a PKCS#12 bundle of key, certificate and CA (mode 0600)")
		fs.BoolVar(&f.p12Legacy, "p12-legacy", false, "encrypt the PKCS#12 bundle with 3DES/SHA-1 for old Java, Windows and Android clients")
		fs.StringVar(&f.p12Password, "p12-password", "", "PKCS#12 password (else MQTK_P12_PASSWORD, else asked on the terminal)")
	}
}

// keyTypeNames lists the --key-type values, default first.
func keyTypeNames() string {
	names := make([]string, len(tlsgen.KeyTypes))
	for i, k := range tlsgen.KeyTypes {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// options turns the parsed flags into tlsgen.Options.
func (f *issueFlags) options(a *app, cmd *cobra.Command, kind tlsgen.Command, args []string) (*tlsgen.Options, error) {
	o := &tlsgen.Options{
		IO:              a.io,
		Command:         kind,
		Dir:             f.dir,
		Force:           f.force,
		Fullchain:       f.fullchain,
		P12:             f.p12,
		P12Legacy:       f.p12Legacy,
		NameConstraints: f.constraints,
		Out:             f.out,
	}
	if f.dir == "" {
		return nil, clierr.Usagef("--dir is empty").Hintf("give a directory, e.g. --dir ./certs")
	}
	// Only explicit choices are passed on, so that reusing an existing CA
	// or certificate can refuse the ones that disagree with it.
	if cmd.Flags().Changed("cn") {
		o.CommonName = f.cn
	}
	if cmd.Flags().Changed("key-type") {
		if strings.TrimSpace(f.keyType) == "" {
			return nil, clierr.Usagef("--key-type is empty").Hintf("use one of %s, or leave it out for %s", keyTypeNames(), tlsgen.ECDSAP256)
		}
		kt, err := tlsgen.ParseKeyType(f.keyType)
		if err != nil {
			return nil, err
		}
		o.KeyType = kt
	}
	if cmd.Flags().Changed("days") {
		if f.days <= 0 {
			return nil, clierr.Usagef("--days %d is not a positive number of days", f.days).
				Hintf("give a positive number of days, e.g. --days %d (the default)", tlsgen.DefaultDays(kind))
		}
		o.Days = f.days
	}
	switch kind {
	case tlsgen.CmdServer:
		o.Names = args
	case tlsgen.CmdClient:
		if len(args) != 1 {
			return nil, clierr.Usagef("tlsgen client takes exactly one name, the certificate's CN (the MQTT user name), got %d", len(args)).
				Hintf("give one name, e.g. mqtk tlsgen client sensor-1")
		}
		o.CommonName = args[0]
	default:
		if len(args) > 0 {
			return nil, clierr.Usagef("unexpected argument %q: mqtk tlsgen takes no names", args[0]).
				Hintf("for a server certificate with your names run mqtk tlsgen server %s", strings.Join(args, " "))
		}
	}
	if f.p12 {
		pw, err := p12Password(a, cmd, f.p12Password)
		if err != nil {
			return nil, err
		}
		o.P12Password = pw
	}
	return o, nil
}

// p12Password takes the PKCS#12 password from the flag, the environment or
// the terminal, in that order; a script without any of them gets a usage
// error rather than a hang.
func p12Password(a *app, cmd *cobra.Command, flag string) (string, error) {
	if cmd.Flags().Changed("p12-password") {
		return flag, nil
	}
	if v := a.getenv("MQTK_P12_PASSWORD"); v != "" {
		return v, nil
	}
	f, ok := a.io.In.(*os.File)
	if !ok || !a.io.InTTY || !term.IsTerminal(int(f.Fd())) {
		return "", clierr.Usagef("--p12 needs a password and there is no terminal to ask").Hintf("give --p12-password or set MQTK_P12_PASSWORD")
	}
	read := func(label string) (string, error) {
		b, err := a.askSecret(cmd.Context(), f, label)
		if err != nil {
			return "", fmt.Errorf("read PKCS#12 password: %w", err)
		}
		return string(b), nil
	}
	pw, err := read("PKCS#12 password: ")
	if err != nil {
		return "", err
	}
	again, err := read("again: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", clierr.Usagef("the two PKCS#12 passwords differ").Hintf("run the command again")
	}
	return pw, nil
}

func newTlsgenCmd(a *app, runF func(*tlsgen.Options) error) *cobra.Command {
	run := func(cmd *cobra.Command, o *tlsgen.Options) error {
		if runF != nil {
			return runF(o)
		}
		return tlsgen.Run(cmd.Context(), o)
	}
	var f issueFlags
	cmd := &cobra.Command{
		Use:   "tlsgen",
		Short: "Make a local CA and certificates for MQTTS and mutual TLS",
		Long: `tlsgen makes everything MQTTS and mutual TLS need on a development machine.

With no subcommand it creates, or reuses when present, in --dir (./certs):
  ca.pem, private/ca-key.pem   a CA (reused on later runs)
  server.pem, server-key.pem   for localhost, 127.0.0.1, ::1 and this host
  client.pem, client-key.pem   a client certificate (CN mqtk-client)
then prints the mqtk broker, mqtk pub/sub and mosquitto.conf lines that use them.

Keys are ECDSA P-256 unless --key-type says otherwise, written with mode
0600 and never overwritten without --force. Replacing the CA invalidates
every certificate it signed, so it needs --force too. On later runs, a --cn,
--key-type or --days that the existing files do not match is refused with
the command that reissues just that certificate.`,
		Example: `  mqtk tlsgen
  mqtk tlsgen server broker.lan 192.168.1.10 --dir certs
  mqtk tlsgen client sensor-1 --p12
  mqtk tlsgen inspect certs/server.pem
  mqtk tlsgen verify --ca certs/ca.pem certs/server.pem --host broker.lan`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(a, cmd, tlsgen.CmdAll, args)
			if err != nil {
				return err
			}
			return run(cmd, o)
		},
	}
	f.bind(cmd, tlsgen.CmdAll)

	sub := func(kind tlsgen.Command, use, short, long, example string) *cobra.Command {
		var sf issueFlags
		c := &cobra.Command{
			Use: use, Short: short, Long: long, Example: example,
			Args: cobra.ArbitraryArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				o, err := sf.options(a, cmd, kind, args)
				if err != nil {
					return err
				}
				return run(cmd, o)
			},
		}
		sf.bind(c, kind)
		return c
	}
	cmd.AddCommand(
		sub(tlsgen.CmdCA, "ca", "Create the CA, or show the one in --dir",
			`ca creates a CA in --dir: ca.pem (give it to clients as --cafile) and
private/ca-key.pem (mode 0600 in a 0700 directory). An existing CA is reused,
and flags it does not match are refused; --force replaces it, and every
certificate the old one signed stops working.
--name-constraint DOMAIN makes a CA that clients trust only for that domain.`,
			"  mqtk tlsgen ca\n  mqtk tlsgen ca --name-constraint home.arpa --force"),
		sub(tlsgen.CmdServer, "server NAME...", "Issue a server certificate for host names, IPs, URIs or emails",
			`server issues NAME.pem and NAME-key.pem (--out, default server) signed by the
CA in --dir, making the CA first if there is none. Each NAME becomes the right
kind of subjectAltName: 192.168.1.10 and ::1 an IP, *.lan a wildcard, spiffe://x/y
or urn:... a URI, a@b.c an email, anything else a DNS name. Clients that connect
by IP address need the IP listed.`,
			"  mqtk tlsgen server localhost 127.0.0.1 broker.lan\n  mqtk tlsgen server '*.iot.lan' --out iot --fullchain"),
		sub(tlsgen.CmdClient, "client CN", "Issue a client certificate for mutual TLS",
			`client issues a certificate for TLS client authentication (extended key usage
clientAuth) with CN as its common name. Brokers with use_identity_as_username
(mosquitto) or mqtk broker --cert-as-username take the CN as the MQTT user name.
Files: NAME.pem and NAME-key.pem (--out, default client).`,
			"  mqtk tlsgen client sensor-1 --out sensor-1\n  mqtk tlsgen client alice --p12"),
		newTlsgenInspectCmd(a),
		newTlsgenVerifyCmd(a),
	)
	return cmd
}

func newTlsgenInspectCmd(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect FILE...",
		Short: "Show subject, names, validity, key and usages of certificates",
		Long: `inspect prints, for every certificate and private key in the files: subject,
subjectAltNames, issuer, validity with days left, key type, key usages, CA
constraints, serial and SHA-256 fingerprint. --format json prints one JSON
array for scripts.`,
		Example: "  mqtk tlsgen inspect certs/*.pem\n  mqtk tlsgen inspect certs/server.pem --format json | jq '.[0].days_left'",
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o := &tlsgen.InspectOptions{IO: a.io, Files: args}
			switch strings.ToLower(format) {
			case "text", "":
			case "json":
				o.JSON = true
			default:
				return clierr.Usagef("unknown --format %q", format).Hintf("use text or json")
			}
			return tlsgen.Inspect(o)
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func newTlsgenVerifyCmd(a *app) *cobra.Command {
	var ca, host string
	cmd := &cobra.Command{
		Use:   "verify --ca CA CERT",
		Short: "Check that a certificate chains to a CA (and fits a host name)",
		Long: `verify checks CERT the way an MQTT client would: signed by the CA, within its
dates, with usable key usages and, with --host, valid for that name or IP.
It prints a plain-language verdict and exits 0 when the certificate is good,
4 (TLS failure) when a client would refuse it.`,
		Example: "  mqtk tlsgen verify --ca certs/ca.pem certs/server.pem --host localhost",
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return clierr.Usagef("tlsgen verify checks one certificate, got %d", len(args)).
					Hintf("give one certificate, e.g. mqtk tlsgen verify --ca certs/ca.pem certs/server.pem")
			}
			return tlsgen.Verify(&tlsgen.VerifyOptions{IO: a.io, CAFile: ca, CertFile: args[0], Host: host})
		},
	}
	cmd.Flags().StringVar(&ca, "ca", "", "the CA certificate to trust (PEM)")
	cmd.Flags().StringVar(&host, "host", "", "also check that the certificate is valid for this host name or IP")
	_ = cmd.MarkFlagFilename("ca", "pem", "crt", "cer")
	return cmd
}
