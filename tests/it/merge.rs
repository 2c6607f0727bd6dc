//! `mailvault merge-eml` end to end: real corpora (CPython's test_email
//! data, mail-parser 1.0.1's messages, malformed ones and its mbox), an
//! independent oracle (Python) for what is a message, duplicates against the
//! folder and across runs, a backed-up folder merged beside the live one,
//! and the bad moments: a running server, a second writer, leftovers of a
//! killed run, hostile names, a dry run.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, TestInstall, corpus, ok, run, snapshot, stderr, stdout};

/// The items of a live folder: number -> content.
fn items(folder: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(folder.join("#msgs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Python's verdict on each file under `dirs`: the rule docs/merge-eml.md
/// states (a header block whose first line is a field, no NUL, naming a
/// sender, recipient, date, subject or Message-ID), judged by Python's own
/// `email` parser, not by mailvault's code.
fn oracle(dirs: &[&Path]) -> BTreeMap<String, bool> {
    let script = r#"
import sys, os, re, email, email.policy, json
ids = {"from","sender","reply-to","to","cc","bcc","date","message-id","subject"}
out = {}
for d in sys.argv[1:]:
    for root, dirs, files in os.walk(d):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            if os.path.islink(p):
                continue
            b = open(p, "rb").read()
            # An mbox of one message (a `From ` envelope line first).
            if b.startswith(b"From "):
                b = b.split(b"\n", 1)[1] if b"\n" in b else b""
            head = re.split(rb"\r?\n\r?\n", b, 1)[0]
            first = head.split(b"\n", 1)[0].rstrip(b"\r")
            good = bool(b) and b"\0" not in head and re.match(rb"^[!-9;-~]+:", first) is not None
            if good:
                m = email.message_from_bytes(b, policy=email.policy.compat32)
                good = any(k.lower() in ids for k in m.keys())
            out[p] = good
print(json.dumps(out))
"#;
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    for d in dirs {
        cmd.arg(d);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn merge_json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut a = vec!["merge-eml", "--running-check", "false", "--json"];
    a.extend_from_slice(args);
    let o = run(&a);
    let code = o.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("no JSON ({code}): {}\n{}", stdout(&o), stderr(&o)));
    (code, v)
}

fn outcomes(report: &serde_json::Value, action: &str) -> Vec<serde_json::Value> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"] == action)
        .cloned()
        .collect()
}

#[test]
fn corpora_are_added_once_bad_ones_reported_and_the_folder_checks_clean() {
    let (Some(cpython), Some(mp)) = (
        corpus("MAILVAULT_TEST_CPYTHON"),
        corpus("MAILVAULT_TEST_MAILPARSER"),
    ) else {
        return;
    };
    let t = TestInstall::sample();
    let install = t.install();
    // Copies: the corpora are never written, and a symbolic link inside a
    // directory must not be followed.
    let inputs = t.tmp.path().join("inputs");
    fs::create_dir_all(&inputs).unwrap();
    util::copy_tree(&cpython, &inputs.join("cpython"));
    util::copy_tree(&mp.join("eml/malformed"), &inputs.join("malformed"));
    util::copy_tree(&mp.join("eml/rfc"), &inputs.join("rfc"));
    std::os::unix::fs::symlink("/etc/passwd", inputs.join("rfc/zz-link.eml")).unwrap();
    // mail-parser's own mbox: its four "messages" have no header at all.
    let mbox = mp.join("mbox/sample.mbox");
    let verdict = oracle(&[&inputs]);
    let good: Vec<&String> = verdict
        .iter()
        .filter(|(_, g)| **g)
        .map(|(p, _)| p)
        .collect();
    let bad: Vec<&String> = verdict
        .iter()
        .filter(|(_, g)| !**g)
        .map(|(p, _)| p)
        .collect();
    assert!(
        good.len() > 40 && bad.len() > 10,
        "{} good, {} bad",
        good.len(),
        bad.len()
    );

    let before = snapshot(&install);
    let (code, r) = merge_json(&[
        "--install-dir",
        install.to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "-f",
        "Imported/Corpora",
        inputs.to_str().unwrap(),
        mbox.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "inputs that are not messages make it partial: {r}");
    let folder = install.join("store/mail/example.com/john/Imported/Corpora");
    let added = outcomes(&r, "added");
    let rejected = outcomes(&r, "rejected");
    // The mbox's messages, counted by Python's mailbox module.
    let o = Command::new("python3")
        .args([
            "-c",
            "import mailbox,sys; print(len(mailbox.mbox(sys.argv[1])))",
        ])
        .arg(&mbox)
        .output()
        .unwrap();
    let in_mbox: usize = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let dups = outcomes(&r, "duplicate");
    let from_mbox = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["source"]
                .as_str()
                .unwrap()
                .starts_with(mbox.to_str().unwrap())
        })
        .count();
    assert_eq!(
        from_mbox, in_mbox,
        "every message of the mbox has an outcome: {r}"
    );
    let mbox_rejected = rejected
        .iter()
        .filter(|a| {
            a["source"]
                .as_str()
                .unwrap()
                .starts_with(mbox.to_str().unwrap())
        })
        .count();
    assert_eq!(
        mbox_rejected, in_mbox,
        "header-less mbox messages are not messages"
    );
    // Every good file added (or a duplicate of an earlier one), every bad one
    // reported with a reason, the link among the rejected and not followed.
    let is = |a: &serde_json::Value, p: &str| {
        let s = a["source"].as_str().unwrap();
        s == p || s.strip_prefix(p).is_some_and(|r| r.starts_with(':'))
    };
    for g in &good {
        let hit = added.iter().chain(&dups).any(|a| is(a, g));
        assert!(hit, "good message {g} was not added");
    }
    for b in &bad {
        let hit = rejected.iter().find(|a| is(a, b));
        assert!(
            hit.is_some_and(|h| h["reason"].as_str().is_some_and(|s| !s.is_empty())),
            "{b} not reported"
        );
    }
    assert!(
        rejected
            .iter()
            .any(|x| x["source"].as_str().unwrap().ends_with("zz-link.eml"))
    );
    assert_eq!(rejected.len(), bad.len() + 1 + in_mbox);
    // Byte-exact: each added loose file is in the folder under its number.
    let now = items(&folder);
    assert_eq!(now.len(), added.len());
    for a in &added {
        let name = format!("{:08x}.eml", a["uid"].as_u64().unwrap());
        let src = a["source"].as_str().unwrap();
        if Path::new(src).is_file() {
            assert_eq!(now[&name], fs::read(src).unwrap(), "{src}");
        }
    }
    // Nothing else in the install changed.
    let after = snapshot(&install);
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{k} changed");
    }
    // A second run adds nothing: everything is a duplicate.
    let (code, r2) = merge_json(&[
        "--install-dir",
        install.to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "-f",
        "Imported/Corpora",
        inputs.to_str().unwrap(),
        mbox.to_str().unwrap(),
    ]);
    assert_eq!(code, 3);
    assert_eq!(r2["added"], 0, "{r2}");
    assert_eq!(
        r2["duplicates"].as_u64().unwrap() as usize,
        added.len() + dups.len()
    );
    assert_eq!(items(&folder), now);
    // The folder is consistent for the server.
    ok(&[
        "reindex",
        "--check",
        "--install-dir",
        install.to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "-f",
        "Imported/Corpora",
    ]);
    // Python's email parser reads every added item.
    let o = Command::new("python3")
        .args([
            "-c",
            "import email,os,sys\nd=sys.argv[1]\nn=0\nfor f in os.listdir(d):\n  email.message_from_bytes(open(os.path.join(d,f),'rb').read()); n+=1\nprint(n)",
        ])
        .arg(folder.join("#msgs"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        now.len().to_string()
    );

    // An mbox written by Python's mailbox module from the good rfc messages
    // (it quotes `From ` lines): each comes back byte for byte.
    let written = t.tmp.path().join("py.mbox");
    let rfc: Vec<&String> = good
        .iter()
        .filter(|p| p.contains("/rfc/"))
        .copied()
        .collect();
    let o = Command::new("python3")
        .args([
            "-c",
            "import mailbox,sys\nm=mailbox.mbox(sys.argv[1])\nfor p in sys.argv[2:]:\n  m.add(open(p,'rb').read())\nm.flush()",
        ])
        .arg(&written)
        .args(&rfc)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, r) = merge_json(&[
        "--install-dir",
        install.to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "-f",
        "FromMbox",
        "--allow-duplicates",
        written.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{r}");
    let got = items(&install.join("store/mail/example.com/john/FromMbox"));
    assert_eq!(got.len(), rfc.len());
    for (content, src) in got.values().zip(&rfc) {
        let want = fs::read(src).unwrap();
        let trim = |b: &[u8]| b.trim_ascii_end().to_vec();
        assert_eq!(trim(content), trim(&want), "{src}");
    }
}

#[test]
fn messages_already_in_the_folder_are_duplicates_unless_allowed() {
    let t = TestInstall::sample();
    let install = t.install();
    let inbox = install.join("store/mail/example.com/john/INBOX");
    let copies = t.tmp.path().join("copies");
    util::copy_tree(&inbox.join("#msgs"), &copies);
    // The same messages with LF line ends are the same messages.
    let lf = t.tmp.path().join("lf");
    fs::create_dir_all(&lf).unwrap();
    for (n, c) in items(&inbox) {
        let text = String::from_utf8_lossy(&c).replace("\r\n", "\n");
        fs::write(lf.join(n), text).unwrap();
    }
    let before = items(&inbox);
    let args = |extra: &[&'static str]| {
        let mut v = vec![
            "--install-dir".to_string(),
            install.to_str().unwrap().to_string(),
            "-u".into(),
            "john@example.com".into(),
            "-f".into(),
            "INBOX".into(),
            copies.to_str().unwrap().into(),
            lf.to_str().unwrap().into(),
        ];
        v.extend(extra.iter().map(|s| (*s).to_string()));
        v
    };
    let a = args(&[]);
    let (code, r) = merge_json(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["added"], 0);
    assert_eq!(r["duplicates"].as_u64().unwrap() as usize, before.len() * 2);
    assert_eq!(items(&inbox), before);
    // --allow-duplicates adds the copies after the existing numbers.
    let a = args(&["--allow-duplicates"]);
    let (code, r) = merge_json(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["added"].as_u64().unwrap() as usize, before.len() * 2);
    let after = items(&inbox);
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "existing item {k} kept");
    }
    let first_new = format!("{:08x}.eml", before.len() + 1);
    assert_eq!(after[&first_new], before.values().next().unwrap().clone());
}

#[test]
fn a_backed_up_folder_is_merged_beside_the_live_one_and_nothing_is_removed() {
    let t = TestInstall::sample();
    let install = t.install();
    t.backup_ok("full", &[]);
    let projects = install.join("store/mail/example.com/john/Projects");
    let backed_up = items(&projects);
    // After the backup: one item deleted, one new arrives.
    let gone = backed_up.keys().next().unwrap().clone();
    fs::remove_file(projects.join("#msgs").join(&gone)).unwrap();
    fs::write(
        projects.join("#msgs/00000063.eml"),
        "From: a@example.com\r\nSubject: new since\r\n\r\nhi\r\n",
    )
    .unwrap();
    let live_before = items(&projects);
    let backups = t.backups();
    let (code, r) = merge_json(&[
        "--install-dir",
        install.to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "john",
        "-f",
        "Projects",
        "--from",
        backups.to_str().unwrap(),
        "--source-folder",
        "Projects",
    ]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["added"], 1, "only the deleted item comes back: {r}");
    let now = items(&projects);
    for (k, v) in &live_before {
        assert_eq!(now.get(k), Some(v), "live item {k} kept");
    }
    assert_eq!(now.len(), live_before.len() + 1);
    let back = outcomes(&r, "added")[0]["uid"].as_u64().unwrap();
    assert_eq!(now[&format!("{back:08x}.eml")], backed_up[&gone]);
    // One message by its path, into a named folder.
    let path = format!("store/mail/example.com/john/Projects/#msgs/{gone}");
    let (code, r) = merge_json(&[
        "--install-dir",
        install.to_str().unwrap(),
        "-f",
        "Restored",
        "--from",
        backups.to_str().unwrap(),
        "--message",
        &path,
    ]);
    assert_eq!(code, 0, "{r}");
    let restored = items(&install.join("store/mail/example.com/john/Restored"));
    assert_eq!(restored.values().collect::<Vec<_>>(), [&backed_up[&gone]]);
    // Calendar items are Kerio items, not mail: from a backup they come
    // back as they are.
    let calendar = items(&install.join("store/mail/example.com/john/Calendar"));
    let (code, r) = merge_json(&[
        "--install-dir",
        install.to_str().unwrap(),
        "-u",
        "john@example.com",
        "-f",
        "Calendar restored",
        "--from",
        backups.to_str().unwrap(),
        "--source-folder",
        "Calendar",
    ]);
    assert_eq!(code, 0, "{r}");
    let mut got: Vec<Vec<u8>> =
        items(&install.join("store/mail/example.com/john/Calendar restored"))
            .into_values()
            .collect();
    let mut want: Vec<Vec<u8>> = calendar.into_values().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Files and a backup at once: one or the other.
    let o = run(&[
        "merge-eml",
        "--install-dir",
        install.to_str().unwrap(),
        "-u",
        "john@example.com",
        "-f",
        "X",
        "--from",
        backups.to_str().unwrap(),
        "--source-folder",
        "Calendar",
        install.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    // A path that is not in the backup is named, with what to do.
    let o = run(&[
        "merge-eml",
        "--running-check",
        "false",
        "--install-dir",
        install.to_str().unwrap(),
        "--from",
        backups.to_str().unwrap(),
        "--message",
        "store/mail/example.com/john/Projects/#msgs/000000ff.eml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("000000ff.eml") && stderr(&o).contains("mailvault search"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn refusals_write_nothing() {
    let t = TestInstall::sample();
    let install = t.install();
    let msg = t.tmp.path().join("m.eml");
    fs::write(&msg, "From: x@example.com\r\nSubject: s\r\n\r\nbody\r\n").unwrap();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "merge-eml",
            "--install-dir",
            install.to_str().unwrap(),
            "-d",
            "example.com",
            "-u",
            "john",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        v.extend(extra.iter().map(|s| (*s).to_string()));
        v.push(msg.to_str().unwrap().to_string());
        v
    };
    let exec = |v: Vec<String>| run(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let before = snapshot(&install);
    // The server runs.
    let o = exec(base(&["-f", "INBOX", "--running-check", "true"]));
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("running"));
    // A dry run.
    let o = exec(base(&["-f", "New", "--dry-run", "--running-check", "true"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("would add 1"), "{}", stdout(&o));
    // Hostile or wrong names.
    for f in ["../../etc", "#msgs", "a/../../b", "/abs", "a//b"] {
        let o = exec(base(&["-f", f, "--running-check", "false"]));
        assert_eq!(o.status.code(), Some(2), "{f}: {}", stderr(&o));
    }
    let o = run(&[
        "merge-eml",
        "--running-check",
        "false",
        "--install-dir",
        install.to_str().unwrap(),
        "-d",
        "example.com",
        "-u",
        "nosuchuser",
        "-f",
        "INBOX",
        msg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no mailbox `nosuchuser@example.com`"),
        "{}",
        stderr(&o)
    );
    // A second writer (a restore holding the install's lock).
    let mut holder = Command::new("flock")
        .arg(install.join(".kmsrecover.lock"))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = exec(base(&["-f", "INBOX", "--running-check", "false"]));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("another kmsrecover or mail tool"),
        "{}",
        stderr(&o)
    );
    let after = snapshot(&install);
    let changed: Vec<&String> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k) && !k.ends_with(".kmsrecover.lock"))
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
}

#[test]
fn a_killed_runs_temporaries_are_removed_and_never_become_items() {
    let t = TestInstall::sample();
    let install = t.install();
    let inbox = install.join("store/mail/example.com/john/INBOX");
    let before = items(&inbox);
    // What a run killed between writing and publishing leaves.
    fs::write(
        inbox.join("#msgs/.mailvault-tmp-99999-0000000d"),
        "From: half",
    )
    .unwrap();
    let msg: PathBuf = t.tmp.path().join("m.eml");
    fs::write(&msg, "From: x@example.com\r\nSubject: s\r\n\r\nbody\r\n").unwrap();
    let (code, r) = merge_json(&[
        "--install-dir",
        install.to_str().unwrap(),
        "-u",
        "john@example.com",
        "-f",
        "INBOX",
        msg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["leftovers_removed"], 1);
    let now = items(&inbox);
    assert_eq!(now.len(), before.len() + 1);
    assert!(now.keys().all(|k| !k.starts_with(".mailvault-tmp")));
    ok(&[
        "reindex",
        "--check",
        "--install-dir",
        install.to_str().unwrap(),
    ]);
}

#[test]
fn a_folder_comes_back_from_an_encrypted_backup_only_with_its_key() {
    let t = TestInstall::sample();
    let install = t.install();
    let key = t.tmp.path().join("k.key");
    ok(&["key", "generate", "--out", key.to_str().unwrap()]);
    let backups = t.tmp.path().join("encrypted");
    ok(&[
        "backup",
        "full",
        "--install-dir",
        install.to_str().unwrap(),
        "--target",
        backups.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let sent = install.join("store/mail/example.com/john/Sent Items");
    let backed_up = items(&sent);
    let args = |with_key: bool| {
        let mut v = vec![
            "merge-eml",
            "--running-check",
            "false",
            "--install-dir",
            install.to_str().unwrap(),
            "-u",
            "john@example.com",
            "-f",
            "Sent back",
            "--from",
            backups.to_str().unwrap(),
            "--source-folder",
            "Sent Items",
        ];
        if with_key {
            v.extend(["--key", key.to_str().unwrap()]);
        }
        v
    };
    let o = bin_no_key_env(&args(false));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        !install
            .join("store/mail/example.com/john/Sent back")
            .exists()
    );
    ok(&args(true));
    let got = items(&install.join("store/mail/example.com/john/Sent back"));
    let mut a: Vec<&Vec<u8>> = got.values().collect();
    let mut b: Vec<&Vec<u8>> = backed_up.values().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

fn bin_no_key_env(args: &[&str]) -> std::process::Output {
    util::bin()
        .args(args)
        .env_remove("MAILVAULT_KEY_FILE")
        .output()
        .unwrap()
}
