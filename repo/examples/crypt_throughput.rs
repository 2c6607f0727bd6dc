//! Encryption and decryption throughput on one core, in memory: encrypts
//! 1 GiB (or `MIB` MiB) through `EncryptWriter` and reads it back through
//! `DecryptReader`, for each chunk size given (default: the format's
//! default), and prints MB/s (10^6 bytes per second of plaintext).
//!
//! ```text
//! cargo run --release -p mailvault-repo --example crypt_throughput -- [MIB] [CHUNK_KIB...]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Read, Seek as _, Write};
use std::time::Instant;

use mailvault_repo::crypt::format::{ChunkCipher, DEFAULT_CHUNK, Header};
use mailvault_repo::crypt::{DecryptReader, EncryptWriter, Key};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(1024, |a| a.parse().expect("MIB"));
    let chunks: Vec<u32> = args
        .map(|a| a.parse::<u32>().expect("CHUNK_KIB") * 1024)
        .collect();
    let chunks = if chunks.is_empty() {
        vec![DEFAULT_CHUNK]
    } else {
        chunks
    };
    let len = mib << 20;
    let plain: Vec<u8> = (0..len)
        .map(|i| (i as u64).wrapping_mul(0x9e37_79b9) as u8)
        .collect();
    let key = Key::generate().unwrap();
    println!(
        "{} MiB, one core, AES-NI {}",
        mib,
        if std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
        {
            "yes"
        } else {
            "no"
        }
    );
    let mut buf = vec![0u8; 1 << 20];
    for chunk in chunks {
        // The output buffer is touched before the clock starts: the figures
        // are the cipher's, not the kernel's first-touch page faults.
        let mut out = vec![1u8; len + len / 256 + 4096];
        out.clear();
        let t = Instant::now();
        let mut w = EncryptWriter::new(&mut out, &key, chunk).unwrap();
        for part in plain.chunks(1 << 20) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap();
        let enc = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut r = DecryptReader::new(Box::new(Cursor::new(out)), &key, "memory").unwrap();
        let mut total = 0usize;
        let mut sum = 0u64;
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            // Look at the plaintext (cheaply) so nothing is optimised away.
            sum = sum.wrapping_add(u64::from(buf[0]) + u64::from(buf[n - 1]));
            total += n;
        }
        let dec = t.elapsed().as_secs_f64();
        assert!(total == len && sum > 0, "round trip");
        // The exact round trip, outside the timings.
        r.seek(std::io::SeekFrom::Start(0)).unwrap();
        let mut back = Vec::with_capacity(len);
        r.read_to_end(&mut back).unwrap();
        assert!(back == plain, "round trip");

        // The cipher alone on one chunk buffer, for the copies' share.
        let header = Header::new(key.id(), chunk).unwrap();
        let cipher = ChunkCipher::new(&key, &header);
        let mut one = Vec::with_capacity(chunk as usize + 16);
        let t = Instant::now();
        for i in 0..(len / chunk as usize) as u64 {
            one.clear();
            one.extend_from_slice(&plain[..chunk as usize]);
            cipher.seal(i, false, &mut one).unwrap();
        }
        let raw = t.elapsed().as_secs_f64();
        let mb = len as f64 / 1e6;
        println!(
            "chunk {:>6} KiB: encrypt {:>7.0} MB/s, decrypt {:>7.0} MB/s (cipher alone {:>7.0} MB/s)",
            chunk / 1024,
            mb / enc,
            mb / dec,
            mb / raw
        );
    }
}
