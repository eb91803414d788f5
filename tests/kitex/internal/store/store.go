// Package store is the Go peer's user store: in memory, with the same rules, error codes and
// password work (argon2id, m=19 MiB, t=2, p=1) as the Rust user service, so that both do the
// same work per request.
package store

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// The argon2id parameters of the Rust service (the argon2 crate's defaults).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

var (
	// ErrInvalid: a field breaks the IDL's api.vd rule.
	ErrInvalid = errors.New("invalid request")
	// ErrTaken: the username is registered already.
	ErrTaken = errors.New("username is already taken")
	// ErrBadCredentials: a wrong password or an unknown user, alike.
	ErrBadCredentials = errors.New("wrong username or password")
	// ErrNoSuchUser: no user with that id.
	ErrNoSuchUser = errors.New("no such user")
)

// User is one registered user.
type User struct {
	ID        int64
	Username  string
	CreatedAt int64
	salt      []byte
	hash      []byte
}

// Store keeps users in memory; safe for concurrent use.
type Store struct {
	mu     sync.Mutex
	byName map[string]*User
	byID   map[int64]*User
	nextID int64
}

// New returns an empty store.
func New() *Store {
	return &Store{byName: map[string]*User{}, byID: map[int64]*User{}, nextID: 1}
}

// ValidCredentials applies the IDL's rules: a username of 1 to 32 characters, a password of 6
// to 64 bytes.
func ValidCredentials(username, password string) bool {
	n := utf8.RuneCountInString(username)
	return n >= 1 && n <= 32 && len(password) >= 6 && len(password) <= 64
}

func hash(password string, salt []byte) []byte {
	return argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
}

// Create registers a user and returns its id.
func (s *Store) Create(username, password string) (int64, error) {
	if !ValidCredentials(username, password) {
		return 0, ErrInvalid
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return 0, err
	}
	sum := hash(password, salt)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byName[username]; ok {
		return 0, ErrTaken
	}
	u := &User{ID: s.nextID, Username: username, CreatedAt: time.Now().Unix(), salt: salt, hash: sum}
	s.nextID++
	s.byName[username] = u
	s.byID[u.ID] = u
	return u.ID, nil
}

// decoySalt is verified against for unknown users, so timing does not tell which names exist.
var decoySalt = make([]byte, 16)

// Login checks a password and returns the user's id.
func (s *Store) Login(username, password string) (int64, error) {
	if !ValidCredentials(username, password) {
		return 0, ErrBadCredentials
	}
	s.mu.Lock()
	u := s.byName[username]
	s.mu.Unlock()
	if u == nil {
		hash(password, decoySalt)
		return 0, ErrBadCredentials
	}
	if subtle.ConstantTimeCompare(hash(password, u.salt), u.hash) != 1 {
		return 0, ErrBadCredentials
	}
	return u.ID, nil
}

// Get returns the user with id.
func (s *Store) Get(id int64) (User, error) {
	if id <= 0 {
		return User{}, ErrInvalid
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.byID[id]
	if u == nil {
		return User{}, ErrNoSuchUser
	}
	return *u, nil
}
