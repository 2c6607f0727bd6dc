//! Every parser of this crate meets hostile input: 20,000 deterministic
//! mutations (bit flips, truncations, insertions of separators and path
//! tricks) of a valid file each. A parser may accept or reject, never panic;
//! what it accepts must write back to the same value. (A stand-in for
//! coverage-guided fuzzing, which needs a nightly toolchain this project does
//! not assume.)

#![allow(clippy::unwrap_used)]

use mailvault_formats::config::{list_items, users};
use mailvault_formats::store::index_fld::IndexLine;
use mailvault_formats::{ArchiveName, ByteSize, Catalog, Summary, VersionInfo};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: [&[u8]; 12] = [
    b"\t",
    b"\n",
    b":",
    b"/",
    b"../",
    b"\\",
    b"\0",
    b"&amp;",
    b"<",
    b"\xff\xfe",
    b"99999999999999999999",
    b"-",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(rng.below(v.len() + 1)),
            2 => {
                let i = rng.below(v.len() + 1);
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(i..i, t.iter().copied());
            }
            _ if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            _ => {}
        }
    }
    v
}

fn each(seed: &[u8], mut check: impl FnMut(&[u8])) {
    let mut rng = Rng(seed.len() as u64);
    check(seed);
    for _ in 0..20_000 {
        check(&mutate(&mut rng, seed));
    }
}

#[test]
fn catalog() {
    let seed = b"# mailvault catalog 1\n# crc32\tsize\tmtime\twhere\tpath\n0a1b2c3d\t1133\t1795000000.000000001\t0\tstore/mail/a.cz/jan/INBOX/#msgs/0000000a.eml\n00000001\t5\t-3.5\tbase\tusers.cfg\n00000002\t7\t1.0\tdeleted\tstore/x y\n";
    let mut accepted = 0;
    each(seed, |b| {
        if let Ok(c) = Catalog::parse(b) {
            accepted += 1;
            assert_eq!(Catalog::parse(c.to_text().as_bytes()).unwrap(), c);
            for e in &c.entries {
                assert!(
                    mailvault_formats::layout::check_relative(e.path.as_str()).is_ok(),
                    "unsafe path accepted: {:?}",
                    e.path
                );
            }
        }
    });
    assert!(
        accepted > 100,
        "the mutations must not all be rejected ({accepted})"
    );
}

#[test]
fn version_and_summary() {
    let v = b"format-version: 1\ntool: mailvault 0.1.0\ntype: differential\nstarted: 2026-11-22T01:00:00Z\nhost: h\nsource: /opt/kerio/mailserver\nbase: F20261122T010000Z\nvolume: 0\n";
    each(v, |b| {
        if let Ok(x) = VersionInfo::parse(b) {
            assert_eq!(VersionInfo::parse(x.to_text().as_bytes()).unwrap(), x);
        }
    });
    let s = b"type: full\nstatus: complete\nstarted: 2026-11-22T01:00:00Z\nended: 2026-11-22T01:10:00Z\nvolume: 0\nlast-volume: yes\nvolume-files: 3\nvolume-bytes: 30\nvolumes: 1\nfiles: 3\nbytes: 30\nstate-files: 3\nstate-bytes: 30\nnote: hello\nskipped: disabled-user store/mail/a.cz/old\n";
    each(s, |b| {
        if let Ok(x) = Summary::parse(b) {
            assert_eq!(Summary::parse(x.to_text().as_bytes()).unwrap(), x);
        }
    });
}

#[test]
fn kerio_xml_and_store_lines() {
    let xml = br#"<?xml version="1.0" encoding="utf-8"?>
<config>
  <list name="User">
    <listitem>
      <variable name="Name">jan</variable>
      <variable name="Domain">a.cz</variable>
      <variable name="Account_enabled">0</variable>
      <variable name="FullName">Jan &amp; &#x10D;</variable>
    </listitem>
  </list>
</config>
"#;
    each(xml, |b| {
        let _ = users::users(b);
        let _ = list_items("mailserver.cfg", b, "Domain");
    });
    each(
        b"U00000001 F80000001 S1133 D43032abf M4305f1b7 I0001 CIPM.Appointment",
        |b| {
            if let Ok(s) = std::str::from_utf8(b) {
                let _ = s.parse::<IndexLine>();
            }
        },
    );
}

#[test]
fn names_and_sizes() {
    each(b"D20261124T010000Z.12.zip", |b| {
        if let Ok(s) = std::str::from_utf8(b)
            && let Ok(n) = s.parse::<ArchiveName>()
        {
            assert_eq!(n.to_string(), s, "names round-trip exactly");
        }
    });
    each(b"500M", |b| {
        if let Ok(s) = std::str::from_utf8(b) {
            let _ = s.parse::<ByteSize>();
        }
    });
}
