// Package store is the Go peer's user store: SQLite through database/sql, with the schema,
// queries and password hashes of the Rust user service (services/user), so that both do the
// same work per request and either can read a database the other wrote.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

var (
	// ErrTaken: the username is registered already (the database's unique constraint said so).
	ErrTaken = errors.New("username is already taken")
	// ErrBadCredentials: a wrong password or an unknown user, alike, so names cannot be probed.
	ErrBadCredentials = errors.New("wrong username or password")
	// ErrNotFound: no user with that id.
	ErrNotFound = errors.New("no such user")
	// ErrBusy: no hashing slot came free within the queue timeout.
	ErrBusy = errors.New("the service is busy; try again later")
)

// schema is services/user/migrations/sqlite/0001_create_users.sql, made idempotent.
const schema = `CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
)`

const (
	insertUser = `INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?) RETURNING id`
	userByName = `SELECT id, username, password_hash, created_at FROM users WHERE username = ?`
	userByID   = `SELECT id, username, password_hash, created_at FROM users WHERE id = ?`
)

// The Rust service's pool size for SQLite; the hashing bounds of its defaults.
const (
	maxConnections   = 4
	hashQueueTimeout = 2 * time.Second
)

// User is one registered user as the service shows it; the hash never leaves the store.
type User struct {
	ID       int64
	Username string
	// Unix seconds.
	CreatedAt int64
}

// Store keeps users in SQLite; safe for concurrent use.
type Store struct {
	db *sql.DB
	// Prepared once and cached per connection, as sqlx's statement cache does for Rust.
	insert, byName, byID *sql.Stmt
	hasher               *hasher
}

// Open opens sqlite://PATH, creating the file, its directory and the schema on first start.
func Open(url string) (*Store, error) {
	path, ok := strings.CutPrefix(url, "sqlite://")
	if !ok || path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("unsupported database URL %q: use sqlite://PATH", url)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cannot create the data directory: %w", err)
	}
	// WAL: readers do not wait for the writer. The busy timeout is sqlx's default.
	db, err := sql.Open("sqlite3", path+"?_journal_mode=WAL&_busy_timeout=5000")
	if err != nil {
		return nil, fmt.Errorf("cannot open the database: %w", err)
	}
	// database/sql keeps only 2 idle connections by default: keep them all, or every busy
	// moment reopens the file.
	db.SetMaxOpenConns(maxConnections)
	db.SetMaxIdleConns(maxConnections)
	s := &Store{db: db, hasher: newHasher(runtime.GOMAXPROCS(0), hashQueueTimeout)}
	if err := s.prepare(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) prepare() error {
	ctx := context.Background()
	if _, err := s.db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("cannot create the schema: %w", err)
	}
	var err error
	prepare := func(query string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var stmt *sql.Stmt
		stmt, err = s.db.PrepareContext(ctx, query)
		return stmt
	}
	s.insert, s.byName, s.byID = prepare(insertUser), prepare(userByName), prepare(userByID)
	if err != nil {
		return fmt.Errorf("cannot prepare the queries: %w", err)
	}
	return nil
}

// Close waits for queries in flight, then closes every connection.
func (s *Store) Close() error {
	for _, stmt := range []*sql.Stmt{s.insert, s.byName, s.byID} {
		if stmt != nil {
			stmt.Close()
		}
	}
	return s.db.Close()
}

// Create registers a user and returns its id; ErrTaken when the name is.
func (s *Store) Create(ctx context.Context, username, password string) (int64, error) {
	var phc string
	err := s.hasher.run(ctx, func() error {
		phc = hashPassword(password)
		return nil
	})
	if err != nil {
		return 0, err
	}
	var id int64
	err = s.insert.QueryRowContext(ctx, username, phc, time.Now().Unix()).Scan(&id)
	if isUniqueViolation(err) {
		return 0, ErrTaken
	}
	return id, err
}

// Login checks a password and returns the user's id. An unknown user costs one hash too, so
// the answer's timing does not tell which names exist.
func (s *Store) Login(ctx context.Context, username, password string) (int64, error) {
	var id int64
	var phc string
	err := s.byName.QueryRowContext(ctx, username).Scan(&id, new(string), &phc, new(int64))
	known := err == nil
	if !known && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	var matches bool
	err = s.hasher.run(ctx, func() (err error) {
		if !known {
			phc = decoy()
		}
		matches, err = verifyPassword(password, phc)
		return err
	})
	if err != nil {
		return 0, err
	}
	if !known || !matches {
		return 0, ErrBadCredentials
	}
	return id, nil
}

// Get returns the user with id; ErrNotFound when there is none.
func (s *Store) Get(ctx context.Context, id int64) (User, error) {
	var u User
	err := s.byID.QueryRowContext(ctx, id).Scan(&u.ID, &u.Username, new(string), &u.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	return u, err
}

// isUniqueViolation is the one place the database's unique constraint becomes ErrTaken.
func isUniqueViolation(err error) bool {
	var sqliteErr sqlite3.Error
	return errors.As(err, &sqliteErr) && sqliteErr.ExtendedCode == sqlite3.ErrConstraintUnique
}
