package store

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// The parameters of the Rust argon2 crate's Argon2::default() (0.5): argon2id, OWASP's
// m=19 MiB, t=2, p=1, a 16-byte salt and a 32-byte output.
const (
	argonMemory  = 19 * 1024
	argonTime    = 2
	argonThreads = 1
	saltLen      = 16
	keyLen       = 32
)

// b64 is the PHC string's encoding: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// hashPassword returns the PHC string of a fresh argon2id hash with a random salt, exactly as
// the Rust service writes it: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>.
func hashPassword(password string) string {
	salt := make([]byte, saltLen)
	rand.Read(salt) // never fails since Go 1.24
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// verifyPassword tells whether password hashes to phc under phc's own parameters; an error
// when phc is not an argon2id PHC string.
func verifyPassword(password, phc string) (bool, error) {
	h, err := parsePHC(phc)
	if err != nil {
		return false, fmt.Errorf("stored hash is not a valid argon2id PHC string: %w", err)
	}
	key := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1, nil
}

// phcHash is a parsed $argon2id$v=19$m=M,t=T,p=P$salt$hash.
type phcHash struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

func parsePHC(phc string) (phcHash, error) {
	var h phcHash
	fields := strings.Split(phc, "$")
	if len(fields) != 6 || fields[0] != "" {
		return h, errors.New("want 5 $-separated fields")
	}
	if fields[1] != "argon2id" {
		return h, fmt.Errorf("algorithm %q", fields[1])
	}
	if fields[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return h, fmt.Errorf("version %q", fields[2])
	}
	for _, param := range strings.Split(fields[3], ",") {
		name, value, _ := strings.Cut(param, "=")
		n, err := strconv.ParseUint(value, 10, 32)
		if err != nil {
			return h, fmt.Errorf("parameter %q", param)
		}
		switch name {
		case "m":
			h.memory = uint32(n)
		case "t":
			h.time = uint32(n)
		case "p":
			if n > 255 {
				return h, fmt.Errorf("parameter %q", param)
			}
			h.threads = uint8(n)
		default:
			return h, fmt.Errorf("parameter %q", param)
		}
	}
	if h.time == 0 || h.threads == 0 || h.memory < 8*uint32(h.threads) {
		return h, fmt.Errorf("parameters %q", fields[3])
	}
	var err error
	if h.salt, err = b64.DecodeString(fields[4]); err != nil {
		return h, fmt.Errorf("salt: %w", err)
	}
	if h.key, err = b64.DecodeString(fields[5]); err != nil {
		return h, fmt.Errorf("hash: %w", err)
	}
	if len(h.salt) < 8 || len(h.key) < 4 {
		return h, errors.New("salt or hash too short")
	}
	return h, nil
}

// decoy is a hash of nothing anyone knows, verified against when the user does not exist.
var decoy = sync.OnceValue(func() string { return hashPassword("decoy password for unknown users") })

// hasher runs at most cap(slots) hashes at once. Each takes a core and 19 MiB for tens of
// milliseconds: unbounded, a burst of logins starves every other call. A call that waited
// queueTimeout for a slot is refused with ErrBusy, as the Rust service does.
type hasher struct {
	slots        chan struct{}
	queueTimeout time.Duration
}

func newHasher(concurrency int, queueTimeout time.Duration) *hasher {
	return &hasher{slots: make(chan struct{}, concurrency), queueTimeout: queueTimeout}
}

// run runs work in a slot and returns its error.
func (h *hasher) run(ctx context.Context, work func() error) error {
	timer := time.NewTimer(h.queueTimeout)
	defer timer.Stop()
	select {
	case h.slots <- struct{}{}:
	case <-timer.C:
		return ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-h.slots }()
	return work()
}
