// Package tmplfunc holds the functions mqtk's Go templates offer, so that
// a template means the same in `mqtk pub --template` and `mqtk reply -m`.
package tmplfunc

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"text/template"
)

// Funcs returns {{uuid}}, {{randInt A B}}, {{randFloat A B}} and
// {{env "NAME"}}; getenv serves env, and nil makes every variable "".
func Funcs(getenv func(string) string) template.FuncMap {
	return template.FuncMap{
		"uuid": UUID,
		"randInt": func(a, b int) (int, error) {
			if b < a {
				return 0, fmt.Errorf("randInt %d %d: the second bound must not be below the first", a, b)
			}
			n, err := rand.Int(rand.Reader, big.NewInt(int64(b-a)+1))
			if err != nil {
				return 0, err
			}
			return a + int(n.Int64()), nil
		},
		"randFloat": func(a, b float64) (float64, error) {
			if b < a {
				return 0, fmt.Errorf("randFloat %g %g: the second bound must not be below the first", a, b)
			}
			n, err := rand.Int(rand.Reader, big.NewInt(1<<53))
			if err != nil {
				return 0, err
			}
			return a + (b-a)*float64(n.Int64())/float64(1<<53), nil
		},
		"env": func(k string) string {
			if getenv == nil {
				return ""
			}
			return getenv(k)
		},
	}
}

// UUID returns a random (version 4) UUID.
func UUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
