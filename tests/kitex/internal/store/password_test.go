package store

import (
	"regexp"
	"testing"
)

// rustPHC was written by the Rust argon2 crate 0.5.3 (the version in Cargo.lock) with
// Argon2::default().hash_password(b"correct horse battery staple", &salt).
const rustPHC = "$argon2id$v=19$m=19456,t=2,p=1$JD5nEJvDEs7QjV79BAi3vg$OvjjSFdjOeQM5oraX3Jx+INi6fWyBptb4dKqnmf+FZs"

func TestVerifiesAHashTheRustServiceWrote(t *testing.T) {
	for password, want := range map[string]bool{"correct horse battery staple": true, "correct horse": false} {
		got, err := verifyPassword(password, rustPHC)
		if err != nil || got != want {
			t.Errorf("verify %q: %v, %v; want %v", password, got, err, want)
		}
	}
}

// The Rust service reads our hashes only if they are byte for byte in its format.
func TestHashesInTheRustServicesFormat(t *testing.T) {
	format := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	a, b := hashPassword("secret1"), hashPassword("secret1")
	if !format.MatchString(a) {
		t.Fatalf("%s is not in the Rust service's format", a)
	}
	if a == b {
		t.Error("two hashes of one password share a salt")
	}
	if ok, err := verifyPassword("secret1", a); !ok || err != nil {
		t.Errorf("our own hash does not verify: %v, %v", ok, err)
	}
}

func TestACorruptStoredHashIsAnErrorNotAMatch(t *testing.T) {
	for _, phc := range []string{
		"not a hash",
		"$argon2i$v=19$m=19456,t=2,p=1$JD5nEJvDEs7QjV79BAi3vg$OvjjSFdjOeQM5oraX3Jx+INi6fWyBptb4dKqnmf+FZs",
		"$argon2id$v=19$m=19456,t=0,p=1$JD5nEJvDEs7QjV79BAi3vg$OvjjSFdjOeQM5oraX3Jx+INi6fWyBptb4dKqnmf+FZs",
		"$argon2id$v=19$m=19456,t=2,p=1$JD5nEJvDEs7QjV79BAi3vg$!!!",
	} {
		if ok, err := verifyPassword("correct horse battery staple", phc); ok || err == nil {
			t.Errorf("%q: %v, %v; want an error", phc, ok, err)
		}
	}
}
