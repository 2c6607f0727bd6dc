//! Tests of the format through the writer and the reader: round trips at
//! every chunk boundary, random seeks, and each kind of damage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use super::format::{HEADER_LEN, MIN_CHUNK, TAG_LEN};
use super::{DecryptReader, EncryptWriter, Key};
use crate::error::Error;

const CHUNK: u32 = MIN_CHUNK;
const C: usize = CHUNK as usize;

fn key() -> Key {
    Key::from_bytes([9u8; 32])
}

fn data(n: usize) -> Vec<u8> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

fn encrypt(plain: &[u8], key: &Key, write_size: usize) -> Vec<u8> {
    let mut w = EncryptWriter::new(Vec::new(), key, CHUNK).unwrap();
    for part in plain.chunks(write_size.max(1)) {
        w.write_all(part).unwrap();
    }
    let (out, written) = w.finish().unwrap();
    assert_eq!(written.encrypted, out.len() as u64);
    assert_eq!(written.plain, plain.len() as u64);
    out
}

fn open(ct: Vec<u8>, key: &Key) -> crate::Result<DecryptReader> {
    DecryptReader::new(Box::new(Cursor::new(ct)), key, "`test.zip.enc`")
}

/// Reads everything; the first error as the crate's error.
fn decrypt(ct: Vec<u8>, key: &Key) -> crate::Result<Vec<u8>> {
    let mut r = open(ct, key)?;
    let mut v = Vec::new();
    r.read_to_end(&mut v)
        .map_err(|e| super::reader::crypt_error(e, "`test.zip.enc`"))?;
    Ok(v)
}

fn crypt_message(r: crate::Result<Vec<u8>>) -> String {
    match r {
        Err(e @ Error::Crypt { .. }) => e.to_string(),
        other => panic!("expected a Crypt error, got {other:?}"),
    }
}

#[test]
fn round_trips_at_every_chunk_boundary() {
    let k = key();
    for n in [0, 1, C - 1, C, C + 1, 2 * C, 7 * C + 123, 40 * C] {
        let plain = data(n);
        for ws in [1000, C, 3 * C + 5] {
            let ct = encrypt(&plain, &k, ws);
            let chunks = n.div_ceil(C).max(1);
            assert_eq!(ct.len(), HEADER_LEN + n + TAG_LEN * chunks, "n={n}");
            let r = open(ct.clone(), &k).unwrap();
            assert_eq!(r.plain_len(), n as u64);
            assert_eq!(decrypt(ct, &k).unwrap(), plain, "n={n} write size {ws}");
        }
    }
}

#[test]
fn two_encryptions_of_the_same_plaintext_differ() {
    let k = key();
    let p = data(100);
    assert_ne!(
        encrypt(&p, &k, 100),
        encrypt(&p, &k, 100),
        "random nonce prefix"
    );
}

#[test]
fn seeks_to_random_offsets_read_the_plaintext() {
    let k = key();
    let plain = data(25 * C + 77);
    let mut r = open(encrypt(&plain, &k, 65_536), &k).unwrap();
    let len = plain.len() as u64;
    let mut s = 12345u64;
    for _ in 0..500 {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1442695040888963407);
        let at = (s >> 11) % (len + 10);
        let n = usize::try_from((s >> 40) % (3 * C as u64)).unwrap();
        let pos = match s % 3 {
            0 => r.seek(SeekFrom::Start(at)).unwrap(),
            1 => {
                let here = r.stream_position().unwrap();
                r.seek(SeekFrom::Current(
                    i64::try_from(at).unwrap() - i64::try_from(here).unwrap(),
                ))
                .unwrap()
            }
            _ => r
                .seek(SeekFrom::End(
                    i64::try_from(at).unwrap() - i64::try_from(len).unwrap(),
                ))
                .unwrap(),
        };
        assert_eq!(pos, at);
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let k = r.read(&mut buf[got..]).unwrap();
            if k == 0 {
                break;
            }
            got += k;
        }
        let start = usize::try_from(at).unwrap().min(plain.len());
        let end = (start + n).min(plain.len());
        assert_eq!(&buf[..got], &plain[start..end], "at {at} n {n}");
    }
    assert!(
        r.seek(SeekFrom::Current(-(i64::try_from(len).unwrap() + 100)))
            .is_err()
    );
}

#[test]
fn a_wrong_key_is_named_with_both_ids() {
    let k = key();
    let other = Key::from_bytes([10u8; 32]);
    let ct = encrypt(&data(10), &k, 10);
    match open(ct, &other) {
        Err(Error::WrongKey {
            place,
            found,
            given,
        }) => {
            assert_eq!(found, k.id().to_string());
            assert_eq!(given, other.id().to_string());
            assert!(place.contains("test.zip.enc"));
            let msg = Error::WrongKey {
                place,
                found,
                given,
            }
            .to_string();
            assert!(msg.contains(&k.id().to_string()) && msg.contains(&other.id().to_string()));
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
}

#[test]
fn a_flipped_byte_anywhere_is_detected() {
    let k = key();
    let plain = data(3 * C + 10);
    let ct = encrypt(&plain, &k, C);
    let stride = C + TAG_LEN;
    // Header: nonce prefix (24), chunk-size byte that keeps the size valid is
    // not possible without changing the geometry, so also the reserved byte.
    for at in [8, 9, 10, 24, 30, 31] {
        let mut bad = ct.clone();
        bad[at] ^= 0x01;
        assert!(decrypt(bad, &k).is_err(), "header byte {at}");
    }
    // Flipping a key-id byte names another key.
    let mut bad = ct.clone();
    bad[16] ^= 0x01;
    assert!(matches!(decrypt(bad, &k), Err(Error::WrongKey { .. })));
    // The nonce prefix is authenticated: every chunk fails, the first is named.
    let mut bad = ct.clone();
    bad[25] ^= 0x80;
    assert!(crypt_message(decrypt(bad, &k)).contains("chunk 0 of 4"));
    // In a chunk's ciphertext, and in a chunk's tag.
    let mut bad = ct.clone();
    bad[HEADER_LEN + stride + 100] ^= 0x04;
    let m = crypt_message(decrypt(bad, &k));
    assert!(
        m.contains("chunk 1 of 4")
            && m.contains("failed authentication")
            && m.contains("test.zip.enc"),
        "{m}"
    );
    let mut bad = ct.clone();
    bad[HEADER_LEN + 2 * stride + C + 3] ^= 0x10;
    assert!(crypt_message(decrypt(bad, &k)).contains("chunk 2 of 4"));
    let mut bad = ct.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(crypt_message(decrypt(bad, &k)).contains("chunk 3 of 4"));
    // A flipped byte is found only when its chunk is read: the others still read.
    let mut bad = ct;
    bad[HEADER_LEN + 2 * stride + 5] ^= 1;
    let mut r = open(bad, &k).unwrap();
    let mut first = vec![0u8; C];
    r.read_exact(&mut first).unwrap();
    assert_eq!(first, plain[..C]);
}

#[test]
fn truncation_mid_chunk_and_at_a_chunk_boundary_is_detected() {
    let k = key();
    let ct = encrypt(&data(3 * C + 10), &k, C);
    let stride = C + TAG_LEN;
    // Mid-chunk: the length is impossible, or the last chunk fails.
    for cut in [
        ct.len() - 1,
        ct.len() - 5,
        HEADER_LEN + stride + 100,
        HEADER_LEN + 3,
    ] {
        let r = decrypt(ct[..cut].to_vec(), &k);
        assert!(r.is_err(), "cut at {cut}");
    }
    // At a chunk boundary: a whole file of 2 full chunks, but chunk 1 was not
    // sealed as the last one.
    let m = crypt_message(decrypt(ct[..HEADER_LEN + 2 * stride].to_vec(), &k));
    assert!(m.contains("chunk 1 of 2"), "{m}");
    let m = crypt_message(decrypt(ct[..HEADER_LEN + stride].to_vec(), &k));
    assert!(m.contains("chunk 0 of 1"), "{m}");
    // Only the header.
    let m = crypt_message(decrypt(ct[..HEADER_LEN].to_vec(), &k));
    assert!(m.contains("truncated"), "{m}");
}

#[test]
fn dropped_swapped_and_appended_chunks_are_detected() {
    let k = key();
    let ct = encrypt(&data(4 * C), &k, C);
    let stride = C + TAG_LEN;
    let chunk = |i: usize| &ct[HEADER_LEN + i * stride..HEADER_LEN + (i + 1) * stride];
    let head = &ct[..HEADER_LEN];
    // Chunk 1 dropped.
    let dropped = [head, chunk(0), chunk(2), chunk(3)].concat();
    assert!(crypt_message(decrypt(dropped, &k)).contains("chunk 1 of 3"));
    // Chunks 1 and 2 swapped.
    let swapped = [head, chunk(0), chunk(2), chunk(1), chunk(3)].concat();
    assert!(crypt_message(decrypt(swapped, &k)).contains("chunk 1 of 4"));
    // Appended bytes, a few or a whole chunk's worth.
    for extra in [1, 16, 17, stride] {
        let mut longer = ct.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        assert!(decrypt(longer, &k).is_err(), "{extra} bytes appended");
    }
    // A chunk appended again (a copy of the last one).
    let dup = [ct.as_slice(), chunk(3)].concat();
    assert!(decrypt(dup, &k).is_err());
}

#[test]
fn a_plain_file_is_not_taken_for_an_encrypted_one() {
    let k = key();
    for plain in [
        b"PK\x03\x04\x14\x00 a zip".to_vec(),
        Vec::new(),
        vec![0u8; 100],
    ] {
        match open(plain, &k) {
            Err(e @ Error::Crypt { .. }) => {
                assert!(
                    e.to_string().contains("not an encrypted mailvault file"),
                    "{e}"
                );
                assert!(e.hint().is_some());
            }
            other => panic!("expected Crypt, got {other:?}"),
        }
    }
}
