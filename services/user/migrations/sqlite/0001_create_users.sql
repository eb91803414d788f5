-- Usernames are unique here, in the database, so concurrent registrations cannot both win.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    -- PHC string of an argon2id hash; the password itself is never stored.
    password_hash TEXT NOT NULL,
    -- Unix seconds.
    created_at BIGINT NOT NULL
);
