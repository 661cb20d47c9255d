package broker

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mosquitto's password file: one "user:hash" per line, where hash is
//
//	$6$<base64 salt>$<base64 sha512(password || salt)>
//	$7$<iterations>$<base64 salt>$<base64 pbkdf2-hmac-sha512(password, salt, iterations, 64)>
//
// as written by mosquitto_passwd (1.x wrote $6$, 2.x writes $7$ by default).

// PasswdIterations is the PBKDF2 iteration count for entries we write.
// mosquitto_passwd 2.0 uses 101; verification reads the count from each
// entry, so a higher count stays compatible with mosquitto.
const PasswdIterations = 1000

const passwdSaltLen = 12 // the salt length mosquitto_passwd uses

type passwdEntry struct {
	kind       byte // '6' or '7'
	iterations int
	salt, hash []byte
}

func parsePasswdHash(h string) (passwdEntry, error) {
	parts := strings.Split(h, "$")
	// "$7$101$salt$hash" splits into "", "7", "101", "salt", "hash".
	dec := base64.StdEncoding.DecodeString
	switch {
	case len(parts) == 4 && parts[0] == "" && parts[1] == "6":
		salt, err1 := dec(parts[2])
		hash, err2 := dec(parts[3])
		if err1 != nil || err2 != nil {
			return passwdEntry{}, errors.New("bad base64 in $6$ hash")
		}
		return passwdEntry{kind: '6', salt: salt, hash: hash}, nil
	case len(parts) == 5 && parts[0] == "" && parts[1] == "7":
		it, err := strconv.Atoi(parts[2])
		if err != nil || it < 1 {
			return passwdEntry{}, fmt.Errorf("bad iteration count %q in $7$ hash", parts[2])
		}
		salt, err1 := dec(parts[3])
		hash, err2 := dec(parts[4])
		if err1 != nil || err2 != nil {
			return passwdEntry{}, errors.New("bad base64 in $7$ hash")
		}
		return passwdEntry{kind: '7', iterations: it, salt: salt, hash: hash}, nil
	}
	return passwdEntry{}, errors.New("not a mosquitto password hash ($6$ or $7$); plain-text passwords must be hashed with 'mqtk broker passwd' or 'mosquitto_passwd -U'")
}

func (e passwdEntry) verify(password []byte) bool {
	var got []byte
	switch e.kind {
	case '6':
		h := sha512.New()
		h.Write(password)
		h.Write(e.salt)
		got = h.Sum(nil)
	case '7':
		var err error
		got, err = pbkdf2.Key(sha512.New, string(password), e.salt, e.iterations, len(e.hash))
		if err != nil {
			return false
		}
	default:
		return false
	}
	return subtle.ConstantTimeCompare(got, e.hash) == 1
}

// HashPassword returns a mosquitto $7$ (PBKDF2-HMAC-SHA512) hash of password.
func HashPassword(password []byte) (string, error) {
	salt := make([]byte, passwdSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("read random salt: %w", err)
	}
	hash, err := pbkdf2.Key(sha512.New, string(password), salt, PasswdIterations, sha512.Size)
	if err != nil {
		return "", err
	}
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("$7$%d$%s$%s", PasswdIterations, enc(salt), enc(hash)), nil
}

// loadPasswdFile reads a mosquitto password file.
func loadPasswdFile(path string) (map[string]passwdEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read password file: %w", err)
	}
	users := map[string]passwdEntry{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("password file %s line %d: want user:hash", path, n)
		}
		e, err := parsePasswdHash(strings.TrimSpace(hash))
		if err != nil {
			return nil, fmt.Errorf("password file %s line %d (user %q): %w", path, n, user, err)
		}
		users[user] = e
	}
	return users, sc.Err()
}

// SetPassword adds user to the mosquitto password file at path, or changes
// their password, keeping every other line as it was. The file is replaced
// atomically and created with mode 0600 if missing.
func SetPassword(path, user string, password []byte) error {
	if user == "" || strings.ContainsAny(user, ":\n\r") {
		return fmt.Errorf("user name %q: must be non-empty and hold no ':' or line break", user)
	}
	if len(password) == 0 {
		return errors.New("empty password: mosquitto_passwd refuses those too")
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	var lines []string
	mode := os.FileMode(0o600)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
		text := strings.TrimRight(string(data), "\n")
		if text != "" {
			lines = strings.Split(text, "\n")
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return fmt.Errorf("read password file: %w", err)
	}
	entry := user + ":" + hash
	replaced := false
	for i, l := range lines {
		if u, _, ok := strings.Cut(l, ":"); ok && u == user {
			lines[i] = entry
			replaced = true
		}
	}
	if !replaced {
		lines = append(lines, entry)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".passwd-*")
	if err != nil {
		return fmt.Errorf("write password file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write password file: %w", err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write password file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write password file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write password file: %w", err)
	}
	return nil
}
