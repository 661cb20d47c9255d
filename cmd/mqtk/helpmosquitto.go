package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// mosquittoOption is one option of mosquitto's clients, as their manuals
// spell it. `mqtk help mosquitto` looks each spelling up in the flags of
// the mqtk command that stands in for the client, so the listing follows
// the flag definitions and cannot drift from them.
type mosquittoOption struct {
	spellings []string // "-c", "--disable-clean-session"
	arg       string   // the value's name, "" for a switch
	clients   string   // which of pub, sub and rr have it
	since     string   // "2.0", or "2.1" for options Debian's 2.0.11 lacks
	// refused says why mqtk does not do what the option asks; such an
	// option is a hidden mqtk flag that exits 2 with this reason.
	refused string
}

// mosquittoOptions are every option of mosquitto_pub, mosquitto_sub and
// mosquitto_rr 2.0 and 2.1, from their manuals.
var mosquittoOptions = []mosquittoOption{
	// Connection and session, in every client.
	{spellings: []string{"-A"}, arg: "ADDRESS", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-c", "--disable-clean-session"}, clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-d", "--debug"}, clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-D", "--property"}, arg: "COMMAND NAME VALUE", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-h", "--host"}, arg: "HOST", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--help"}, clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-i", "--id"}, arg: "ID", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-I", "--id-prefix"}, arg: "PREFIX", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-k", "--keepalive"}, arg: "SECONDS", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-L", "--url"}, arg: "URL", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--nodelay"}, clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-p", "--port"}, arg: "PORT", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-P", "--pw"}, arg: "PASSWORD", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--proxy"}, arg: "URL", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-q", "--qos"}, arg: "QOS", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--quiet"}, clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-S"}, clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-t", "--topic"}, arg: "TOPIC", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-u", "--username"}, arg: "USER", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--unix"}, arg: "PATH", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-V", "--protocol-version"}, arg: "VERSION", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--will-payload"}, arg: "PAYLOAD", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--will-qos"}, arg: "QOS", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--will-retain"}, clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--will-topic"}, arg: "TOPIC", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"-x"}, arg: "SECONDS", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--mptcp"}, clients: "pub sub rr", since: "2.1",
		refused: "Multipath TCP is not supported yet: mqtk connects over plain TCP"},
	{spellings: []string{"-o"}, arg: "FILE", clients: "pub sub rr", since: "2.1"},
	{spellings: []string{"--ws"}, clients: "pub sub rr", since: "2.1"},
	// TLS.
	{spellings: []string{"--cafile"}, arg: "FILE", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--capath"}, arg: "DIR", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--cert"}, arg: "FILE", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--ciphers"}, arg: "LIST", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--insecure"}, clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--key"}, arg: "FILE", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--keyform"}, arg: "pem|engine", clients: "pub sub rr", since: "2.0",
		refused: "only pem is taken: Go's TLS reads keys from PEM files, not from OpenSSL engines"},
	{spellings: []string{"--psk"}, arg: "HEX", clients: "pub sub rr", since: "2.0",
		refused: "Go's TLS has no pre-shared-key cipher suites: use certificates (mqtk tlsgen)"},
	{spellings: []string{"--psk-identity"}, arg: "ID", clients: "pub sub rr", since: "2.0",
		refused: "Go's TLS has no pre-shared-key cipher suites: use certificates (mqtk tlsgen)"},
	{spellings: []string{"--tls-alpn"}, arg: "PROTOCOL", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--tls-engine"}, arg: "ENGINE", clients: "pub sub rr", since: "2.0",
		refused: "OpenSSL engines (TPM, HSM) are not available to Go's TLS: give the key as a PEM file"},
	{spellings: []string{"--tls-engine-kpass-sha1"}, arg: "SHA1", clients: "pub sub rr", since: "2.0",
		refused: "OpenSSL engines (TPM, HSM) are not available to Go's TLS: give the key as a PEM file"},
	{spellings: []string{"--tls-use-os-certs"}, clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--tls-version"}, arg: "VERSION", clients: "pub sub rr", since: "2.0"},
	{spellings: []string{"--no-tls"}, clients: "pub sub rr", since: "2.1"},
	{spellings: []string{"--tls-keylog"}, arg: "FILE", clients: "pub sub rr", since: "2.1"},
	// The request or message to send.
	{spellings: []string{"-f", "--file"}, arg: "FILE", clients: "pub rr", since: "2.0"},
	{spellings: []string{"-m", "--message"}, arg: "MESSAGE", clients: "pub rr", since: "2.0"},
	{spellings: []string{"-n", "--null-message"}, clients: "pub rr", since: "2.0"},
	{spellings: []string{"-s", "--stdin-file"}, clients: "pub rr", since: "2.0"},
	{spellings: []string{"-l", "--stdin-line"}, clients: "pub", since: "2.0"},
	{spellings: []string{"-r", "--retain"}, clients: "pub", since: "2.0"},
	{spellings: []string{"--repeat"}, arg: "COUNT", clients: "pub", since: "2.0"},
	{spellings: []string{"--repeat-delay"}, arg: "SECONDS", clients: "pub", since: "2.0"},
	// Receiving and printing.
	{spellings: []string{"-e"}, arg: "TOPIC", clients: "rr", since: "2.0"},
	{spellings: []string{"-C"}, arg: "COUNT", clients: "sub", since: "2.0"},
	{spellings: []string{"-E"}, clients: "sub", since: "2.0"},
	{spellings: []string{"-F"}, arg: "FORMAT", clients: "sub rr", since: "2.0"},
	{spellings: []string{"-N"}, clients: "sub rr", since: "2.0"},
	{spellings: []string{"--pretty"}, clients: "sub rr", since: "2.0"},
	{spellings: []string{"-R"}, clients: "sub rr", since: "2.0"},
	{spellings: []string{"--random-filter"}, arg: "PERCENT", clients: "sub", since: "2.0"},
	{spellings: []string{"--remove-retained"}, clients: "sub", since: "2.0"},
	{spellings: []string{"--retain-as-published"}, clients: "sub", since: "2.0"},
	{spellings: []string{"--retained-only"}, clients: "sub", since: "2.0"},
	{spellings: []string{"-T", "--filter-out"}, arg: "FILTER", clients: "sub", since: "2.0"},
	{spellings: []string{"-U", "--unsubscribe"}, arg: "FILTER", clients: "sub", since: "2.0"},
	{spellings: []string{"-v", "--verbose"}, clients: "sub rr", since: "2.0"},
	{spellings: []string{"-W"}, arg: "SECONDS", clients: "sub rr", since: "2.0"},
	{spellings: []string{"--latency"}, clients: "rr", since: "2.1"},
	{spellings: []string{"--message-rate"}, clients: "sub", since: "2.1"},
	{spellings: []string{"--retain-handling"}, arg: "always|new|never", clients: "sub rr", since: "2.1"},
	{spellings: []string{"-w", "--watch"}, clients: "sub", since: "2.1"},
}

// lookupSpelling finds the flag a mosquitto spelling names in fs: a
// shorthand, or a long name through fs's aliases (--pw is --password).
func lookupSpelling(fs *pflag.FlagSet, spelling string) *pflag.Flag {
	if name, ok := strings.CutPrefix(spelling, "--"); ok {
		return fs.Lookup(name)
	}
	return fs.ShorthandLookup(strings.TrimPrefix(spelling, "-"))
}

// mosquittoMapping is what one mosquitto option is in one mqtk command.
type mosquittoMapping struct {
	client string
	flag   *pflag.Flag
	err    string // why the option has no flag there (a bug the test catches)
}

// mapMosquittoOption looks o up in the mqtk commands named in clients;
// global holds flags every command inherits (--help).
func mapMosquittoOption(o mosquittoOption, cmds map[string]*cobra.Command, global *pflag.FlagSet) []mosquittoMapping {
	var out []mosquittoMapping
	for _, client := range strings.Fields(o.clients) {
		m := mosquittoMapping{client: client}
		for _, sp := range o.spellings {
			fl := lookupSpelling(cmds[client].Flags(), sp)
			if fl == nil {
				fl = lookupSpelling(global, sp)
			}
			switch {
			case fl == nil:
				m.err = fmt.Sprintf("mqtk %s has no flag for %s", client, sp)
			case m.flag != nil && m.flag != fl:
				m.err = fmt.Sprintf("mqtk %s: %s and %s are different flags", client, o.spellings[0], sp)
			default:
				m.flag = fl
			}
		}
		out = append(out, m)
	}
	return out
}

// mosquittoCommands builds the mqtk commands that stand in for
// mosquitto's clients, unattached, for their flag sets.
func mosquittoCommands(a *app) map[string]*cobra.Command {
	return map[string]*cobra.Command{
		"pub": newPubCmd(a, nil),
		"sub": newSubCmd(a, nil),
		"rr":  newRRCmd(a, nil),
	}
}

func flagTitle(fl *pflag.Flag) string {
	if fl.Shorthand != "" {
		return fmt.Sprintf("-%s, --%s", fl.Shorthand, fl.Name)
	}
	return "--" + fl.Name
}

// printMosquittoHelp writes `mqtk help mosquitto`.
func printMosquittoHelp(w io.Writer, a *app, root *cobra.Command) error {
	cmds := mosquittoCommands(a)
	var b strings.Builder
	b.WriteString(`mosquitto_pub, mosquitto_sub and mosquitto_rr options in mqtk

Replace mosquitto_pub with 'mqtk pub', mosquitto_sub with 'mqtk sub' and
mosquitto_rr with 'mqtk rr': each option below is taken as mosquitto's
client spells it, with the mqtk flag it sets. Options marked 2.1 are
mosquitto 2.1's. Where mqtk differs on purpose:
  - mqtk speaks MQTT 5 unless told -V 311 (mosquitto_pub and _sub: 3.1.1);
  - -d writes the packets on stderr, so stdout keeps the data;
  - -I appends random characters (mosquitto: the process id);
  - exit codes other than 0 and 27 follow 'mqtk help exit-codes'.
A refused option exits 2 with the reason, never "unknown flag".

`)
	for _, o := range mosquittoOptions {
		name := strings.Join(o.spellings, ", ")
		if o.arg != "" {
			name += " " + o.arg
		}
		where := o.clients
		if o.since == "2.1" {
			where += "; 2.1"
		}
		fmt.Fprintf(&b, "%s  (%s)\n", name, where)
		if o.refused != "" {
			fmt.Fprintf(&b, "    refused (exit 2): %s\n", o.refused)
			continue
		}
		// One line per distinct flag; pub, sub and rr mostly share one.
		seen := map[string][]string{}
		var order []string
		for _, m := range mapMosquittoOption(o, cmds, root.PersistentFlags()) {
			line := "(none)"
			if m.flag != nil {
				// pflag's `NAME` marks a value's name in usage strings.
				line = fmt.Sprintf("%s  %s", flagTitle(m.flag), strings.ReplaceAll(m.flag.Usage, "`", ""))
			}
			if _, ok := seen[line]; !ok {
				order = append(order, line)
			}
			seen[line] = append(seen[line], m.client)
		}
		for _, line := range order {
			if len(order) > 1 {
				fmt.Fprintf(&b, "    mqtk %s: %s\n", strings.Join(seen[line], ", "), line)
			} else {
				fmt.Fprintf(&b, "    mqtk: %s\n", line)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
