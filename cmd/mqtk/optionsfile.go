package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/spf13/pflag"
)

// optionLine is one option read from an options file.
type optionLine struct {
	line        int
	flag, value string
	hasValue    bool
}

// readOptionsFile reads mosquitto 2.1's -o file: one option per line as
// it would be written on the command line, "-p 1883" or "--cafile
// ca.pem", the value being everything after the first space (spaces in
// it included, no quoting); "--name=value" works too. Empty lines and
// lines that start with # are skipped.
func readOptionsFile(path string) ([]optionLine, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "read -o options file", Err: err}
	}
	var out []optionLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if !strings.HasPrefix(text, "-") {
			return nil, &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("%s:%d: %q is not an option", path, n, text),
				Hints: []string{"write one option per line as on the command line, e.g. '-h broker.local' or '--cafile ca.pem'"}}
		}
		o := optionLine{line: n}
		o.flag, o.value, o.hasValue = strings.Cut(text, " ")
		if !o.hasValue && strings.HasPrefix(o.flag, "--") {
			o.flag, o.value, o.hasValue = strings.Cut(o.flag, "=")
		}
		out = append(out, o)
	}
	if err := sc.Err(); err != nil {
		return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "read -o options file " + path, Err: err}
	}
	return out, nil
}

// applyOptionsFile sets the flags the -o file names, once. A flag given on
// the command line wins over the file, as with mosquitto; for repeatable
// flags (-t, -T, -U, -D, ...) the file's values come first and the
// command line's follow. The values then count as given on the command
// line: they win over MQTK_* variables and profiles.
func (f *connFlags) applyOptionsFile() error {
	if f.optsDone || f.optionsFile == "" {
		f.optsDone = true
		return nil
	}
	f.optsDone = true
	path := f.optionsFile
	lines, err := readOptionsFile(path)
	if err != nil {
		return err
	}
	fs := f.flags
	onCmdLine := map[string]bool{}
	fs.Visit(func(fl *pflag.Flag) { onCmdLine[fl.Name] = true })
	// Repeatable flags given on the command line: their values, to be
	// appended again after the file's.
	later := map[string][]string{}
	for _, o := range lines {
		where := fmt.Sprintf("%s:%d", path, o.line)
		var fl *pflag.Flag
		if strings.HasPrefix(o.flag, "--") {
			fl = fs.Lookup(o.flag[2:])
		} else if len(o.flag) == 2 {
			fl = fs.ShorthandLookup(o.flag[1:])
		}
		if fl == nil {
			return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("%s: unknown option %s", where, o.flag),
				Hints: []string{"an options file takes this command's flags, one per line (see --help)"}}
		}
		if fl.Name == "options-file" {
			return clierr.Usagef("%s: -o cannot name another options file", where)
		}
		value := o.value
		switch {
		case fl.NoOptDefVal != "" && !o.hasValue:
			value = fl.NoOptDefVal // a switch such as -r or --insecure
		case fl.NoOptDefVal != "":
			if _, err := strconv.ParseBool(value); err != nil {
				return clierr.Usagef("%s: %s takes no value, found %q", where, o.flag, value)
			}
		case !o.hasValue:
			return clierr.Usagef("%s: %s needs a value on the same line", where, o.flag).Hintf("write it as %s VALUE", o.flag)
		}
		if fl.Annotations[propertyAnnotation] != nil {
			// -D's words, joined as the command line's are (joinProperties).
			value = strings.Join(strings.Fields(value), propSep)
		}
		sv, repeatable := fl.Value.(pflag.SliceValue)
		if onCmdLine[fl.Name] {
			if !repeatable && fl.Annotations[propertyAnnotation] == nil {
				continue // the command line wins
			}
			if repeatable {
				if _, saved := later[fl.Name]; !saved {
					later[fl.Name] = sv.GetSlice()
					if err := sv.Replace(nil); err != nil {
						return fmt.Errorf("%s: %w", where, err)
					}
				}
			}
		}
		if err := fs.Set(fl.Name, value); err != nil {
			// The flag type's hints (-C, -D give some) survive the %v.
			return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("%s: invalid value %q for %s: %v", where, value, o.flag, err), Hints: clierr.HintsOf(err)}
		}
	}
	for name, vals := range later {
		sv := fs.Lookup(name).Value.(pflag.SliceValue)
		for _, v := range vals {
			if err := sv.Append(v); err != nil {
				return fmt.Errorf("re-apply --%s after %s: %w", name, path, err)
			}
		}
	}
	return nil
}
