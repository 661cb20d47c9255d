// Package tlsgen makes a local certificate authority and the server and
// client certificates that MQTTS and mutual TLS need, and inspects and
// verifies certificates.
//
// Files are written with care: private keys are created exclusively with
// mode 0600, the CA key lives in a 0700 directory, and an existing CA is
// reused rather than silently replaced, because replacing it invalidates
// every certificate it signed.
package tlsgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"strings"

	"github.com/mqtk/mqtk/internal/clierr"
)

// KeyType names a key algorithm and size as given to --key-type.
type KeyType string

// The supported key types. ECDSA P-256 is the default: every TLS stack an
// MQTT client is likely to use supports it, and it is fast.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	RSA2048   KeyType = "rsa-2048"
	RSA3072   KeyType = "rsa-3072"
	RSA4096   KeyType = "rsa-4096"
	Ed25519   KeyType = "ed25519"
)

// KeyTypes lists the accepted --key-type values, default first.
var KeyTypes = []KeyType{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096, Ed25519}

// ParseKeyType validates a --key-type value; "" means the default.
func ParseKeyType(s string) (KeyType, error) {
	norm := strings.ToLower(strings.TrimSpace(s))
	if norm == "" {
		return ECDSAP256, nil
	}
	// Accept a few spellings people type from other tools' habits.
	switch norm {
	case "ecdsa", "ec", "p256", "p-256", "ecdsa-256", "ecdsap256":
		return ECDSAP256, nil
	case "p384", "p-384", "ecdsa-384", "ecdsap384":
		return ECDSAP384, nil
	case "rsa", "rsa2048":
		return RSA2048, nil
	case "rsa3072":
		return RSA3072, nil
	case "rsa4096":
		return RSA4096, nil
	}
	for _, k := range KeyTypes {
		if KeyType(norm) == k {
			return k, nil
		}
	}
	names := make([]string, len(KeyTypes))
	for i, k := range KeyTypes {
		names[i] = string(k)
	}
	return "", clierr.Usagef("unknown --key-type %q", s).Hintf("use one of %s", strings.Join(names, ", "))
}

// generateKey makes a new private key of type kt from rnd.
func generateKey(kt KeyType, rnd io.Reader) (crypto.Signer, error) {
	switch kt {
	case ECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rnd)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rnd)
	case RSA2048:
		return rsa.GenerateKey(rnd, 2048)
	case RSA3072:
		return rsa.GenerateKey(rnd, 3072)
	case RSA4096:
		return rsa.GenerateKey(rnd, 4096)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rnd)
		return k, err
	}
	return nil, fmt.Errorf("unsupported key type %q", kt)
}

// encodeKey returns the key as a PKCS#8 "PRIVATE KEY" PEM block, the one
// form that holds all three algorithms and that OpenSSL, mosquitto and Go
// all read.
func encodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseKey reads a PEM private key in PKCS#8, PKCS#1 or SEC 1 form.
func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("no PEM private key found")
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", strings.ToLower(b.Type), err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		return s, nil
	}
}

// keyDescription names the algorithm and size of a public key, as
// "ECDSA P-256", "RSA 3072" or "Ed25519".
func keyDescription(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// keyTypeOf is the --key-type that makes a key like pub, or "" for a key
// mqtk does not make.
func keyTypeOf(pub any) KeyType {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256
		case elliptic.P384():
			return ECDSAP384
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048
		case 3072:
			return RSA3072
		case 4096:
			return RSA4096
		}
	case ed25519.PublicKey:
		return Ed25519
	}
	return ""
}

// sameKey reports whether the private key belongs to the certificate.
func sameKey(cert *x509.Certificate, key crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}
