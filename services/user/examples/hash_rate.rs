//! How many argon2id hashes per second the service can do on this machine, through the same
//! bounded `Hasher` it serves with: one at a time, then one per core.
//!
//! `cargo run --release -p user-service --example hash_rate -- [hashes]` (default 64); a debug
//! build (`cargo run -p ...`) shows what tests and `scripts/dev` get.

use std::{num::NonZeroUsize, time::Duration, time::Instant};

use user_service::password::{Hasher, default_concurrency};

#[tokio::main]
async fn main() {
    let hashes: usize = match std::env::args().nth(1).map(|n| n.parse()) {
        None => 64,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: hash_rate [hashes, a positive number]");
            std::process::exit(2);
        }
    };
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("{hashes} argon2id hashes (m=19 MiB, t=2, p=1), {profile} build");
    for concurrency in [NonZeroUsize::MIN, default_concurrency()] {
        let hasher = Hasher::new(concurrency, Duration::from_secs(3600));
        let started = Instant::now();
        let calls: Vec<_> = (0..hashes)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(format!("password {i}")).await })
            })
            .collect();
        for call in calls {
            call.await
                .expect("no panic")
                .expect("argon2id hashes any password");
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "  {concurrency} at once: {:7.1} hashes/s, {:6.1} ms per hash",
            hashes as f64 / elapsed,
            elapsed * 1000.0 * concurrency.get() as f64 / hashes as f64,
        );
    }
}
