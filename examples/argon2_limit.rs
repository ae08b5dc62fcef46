//! The Argon2 ceiling for `POST /token`: how many password verifications per second this machine
//! can do with the service's parameters (Argon2id, m=19456 KiB, t=2, p=1, 32-byte output), one
//! verification at a time per thread, each thread reusing one memory buffer as the hashing pool
//! in `src/auth/password.rs` does.
//!
//! Prints one number, the total verifications per second over all threads, on standard output.
//!
//! ```sh
//! cargo run --release --example argon2_limit -- [THREADS] [SECONDS]   # defaults: 2 and 5
//! ```

use std::{
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};

const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;
const OUTPUT_BYTES: usize = 32;
const PASSWORD: &[u8] = b"secret";

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args
        .next()
        .map(|a| a.parse().expect("THREADS must be a positive integer"))
        .unwrap_or(2);
    let seconds: f64 = args
        .next()
        .map(|a| a.parse().expect("SECONDS must be a number"))
        .unwrap_or(5.0);
    assert!(threads > 0, "THREADS must be a positive integer");

    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_BYTES))
        .expect("valid Argon2 parameters");
    let phc = Arc::new(make_phc(&params));
    let duration = Duration::from_secs_f64(seconds);
    // Everyone starts timing together, after allocating (and touching) its buffer.
    let barrier = Arc::new(Barrier::new(threads + 1));

    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let phc = Arc::clone(&phc);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut memory = vec![Block::default(); MEMORY_KIB as usize];
                // One untimed verification warms the buffer (page faults) and checks correctness.
                assert!(verify(&phc, PASSWORD, &mut memory), "the hash must verify");
                barrier.wait();
                let start = Instant::now();
                let mut done = 0u64;
                while start.elapsed() < duration {
                    assert!(verify(&phc, PASSWORD, &mut memory));
                    done += 1;
                }
                (done, start.elapsed())
            })
        })
        .collect();
    barrier.wait();

    let mut rate = 0.0;
    for worker in workers {
        let (done, elapsed) = worker.join().expect("a worker panicked");
        rate += done as f64 / elapsed.as_secs_f64();
    }
    println!("{rate:.2}");
}

/// A PHC string for `PASSWORD` with our parameters, as the service stores it.
fn make_phc(params: &Params) -> String {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let mut output = [0u8; OUTPUT_BYTES];
    let mut memory = vec![Block::default(); params.block_count()];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(PASSWORD, &salt, &mut output, &mut memory[..])
        .expect("hashing succeeds");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).expect("params encode"),
        salt: Some(Salt::new(&salt).expect("salt encodes")),
        hash: Some(Output::new(&output).expect("output encodes")),
    }
    .to_string()
}

/// Verifies `password` against the PHC string `stored` the way the service's workers do: parse,
/// recompute into the reused buffer, compare in constant time.
fn verify(stored: &str, password: &[u8], memory: &mut [Block]) -> bool {
    let phc = PasswordHash::new(stored).expect("a valid PHC string");
    let params = Params::try_from(&phc).expect("valid parameters");
    let salt = phc.salt.expect("a salt");
    let expected = phc.hash.expect("a hash");
    let mut output = vec![0u8; expected.len()];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password,
            salt.as_ref(),
            &mut output,
            &mut memory[..params.block_count()],
        )
        .expect("hashing succeeds");
    let expected = expected.as_bytes();
    output.len() == expected.len()
        && output
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
