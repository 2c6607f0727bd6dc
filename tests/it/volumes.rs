//! Split volumes: each one a standalone ZIP, together the whole backup.

use std::collections::BTreeSet;

use crate::util::*;

#[test]
fn small_split_size_gives_standalone_volumes_that_together_hold_everything() {
    let t = TestInstall::sample();
    // One file bigger than the split size must go alone into a volume.
    let mut big = vec![0u8; 150 * 1024];
    let mut x: u32 = 12345;
    for b in &mut big {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    std::fs::write(
        t.path("store/mail/example.com/john/INBOX/#msgs/00000200.eml"),
        &big,
    )
    .unwrap();
    let s = t.backup_ok("full", &["--split-size", "64K"]);
    let vols = t.archives();
    assert!(vols.len() >= 3, "expected several volumes, got {vols:?}");
    assert_eq!(s["volumes"].as_array().unwrap().len(), vols.len());
    let stem = vols[0].file_name().unwrap().to_str().unwrap()[..17].to_string();
    let mut all = BTreeSet::new();
    for v in &vols {
        let name = v.file_name().unwrap().to_str().unwrap();
        // Sorted names: F….1.zip, F….2.zip, …, F….zip; check each by its own number.
        let n: u32 = name
            .trim_start_matches(&stem)
            .trim_end_matches(".zip")
            .trim_start_matches('.')
            .parse()
            .unwrap_or(0);
        assert_valid_zip(v);
        let names = entry_names(v);
        assert_eq!(names.first().unwrap(), ".version.txt", "{name}");
        assert_eq!(names.last().unwrap(), ".summary.txt", "{name}");
        assert!(
            entry_text(v, ".version.txt").contains(&format!("volume: {n}\n")),
            "{name}"
        );
        let files: Vec<&String> = names.iter().filter(|e| e.starts_with("@backup/")).collect();
        let size = std::fs::metadata(v).unwrap().len();
        if files.iter().any(|f| f.ends_with("00000200.eml")) {
            assert_eq!(files.len(), 1, "the oversized file is alone in its volume");
        } else {
            assert!(size <= 64 * 1024, "{name} is {size} bytes");
        }
        for f in files {
            assert!(all.insert(f.clone()), "{f} stored twice");
        }
    }
    // The last volume holds the catalog; it names each file's volume.
    let last = vols
        .iter()
        .find(|v| entry_text(v, ".summary.txt").contains("last-volume: yes"))
        .unwrap();
    let cat = catalog(last);
    assert_eq!(cat.len(), all.len());
    assert!(entry_text(last, ".summary.txt").contains(&format!("volumes: {}\n", vols.len())));
    let mut used: BTreeSet<String> = BTreeSet::new();
    for (_, (w, _, _)) in cat {
        used.insert(w);
    }
    assert!(used.len() >= 3);
    ok(&["verify", t.backups().to_str().unwrap()]);
}

#[test]
fn split_size_below_minimum_is_refused() {
    let t = TestInstall::sample();
    let out = t.backup("full", &["--split-size", "1K"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at least"), "{}", stderr(&out));
    let out = t.backup("full", &["--split-size", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not a size"), "{}", stderr(&out));
}
