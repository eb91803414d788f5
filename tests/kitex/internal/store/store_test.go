package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open("sqlite://" + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestUsersPersistInAWALDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nested", "user.db")
	s := open(t, path)
	id, err := s.Create(ctx, "ann", "correct horse")
	if err != nil || id <= 0 {
		t.Fatalf("create: %d, %v", id, err)
	}
	var mode string
	if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal mode %q, %v; want wal", mode, err)
	}
	s.Close()

	s = open(t, path)
	u, err := s.Get(ctx, id)
	if err != nil || u.Username != "ann" || u.ID != id || u.CreatedAt == 0 {
		t.Fatalf("get after reopening: %+v, %v", u, err)
	}
	if got, err := s.Login(ctx, "ann", "correct horse"); got != id || err != nil {
		t.Errorf("login: %d, %v", got, err)
	}
	for _, wrong := range [][2]string{{"ann", "wrong horse"}, {"nobody", "correct horse"}} {
		if _, err := s.Login(ctx, wrong[0], wrong[1]); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("login %v: %v", wrong, err)
		}
	}
	if _, err := s.Get(ctx, id+1); !errors.Is(err, ErrNotFound) {
		t.Errorf("get a missing user: %v", err)
	}
}

// A user the Rust service stored (same schema, its PHC string) logs in here.
func TestReadsAUserTheRustServiceStored(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "user.db"))
	_, err := s.db.Exec(`INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)`,
		"rusty", rustPHC, 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := s.Login(context.Background(), "rusty", "correct horse battery staple"); err != nil || id <= 0 {
		t.Errorf("login: %d, %v", id, err)
	}
}

func TestConcurrentRegistrationsOfOneNameGiveExactlyOneSuccess(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "user.db"))
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := s.Create(context.Background(), "eve", "secret1")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	succeeded := 0
	for err := range errs {
		switch {
		case err == nil:
			succeeded++
		case !errors.Is(err, ErrTaken):
			t.Errorf("want ErrTaken, got %v", err)
		}
	}
	if succeeded != 1 {
		t.Errorf("%d registrations succeeded", succeeded)
	}
}

func TestOnlySQLiteURLs(t *testing.T) {
	for _, url := range []string{"postgres://localhost/users", "sqlite://", "data/user.db"} {
		if _, err := Open(url); err == nil {
			t.Errorf("Open(%q) succeeded", url)
		}
	}
}
