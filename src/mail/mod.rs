//! Mail tools around the message store: what admins otherwise do by hand
//! around Kerio's backups. [`store`] reads a store, live or backed up;
//! [`folder`] adds items to a live folder without replacing anything;
//! [`giveback`] adds backed-up messages to a live folder, skipping those
//! already there (`kmsrecover --message`, `merge-eml --from … --message`).
//! The commands: `merge` (loose `.eml`, mbox or a backed-up folder into a
//! live folder), `search` (messages across every archive, headers only),
//! `reindex` (`index.fld` from `#msgs`), `export` (Maildir++, mbox, `.eml`)
//! and `migrate` (a chain onto a new install, verified per mailbox).

pub mod export;
pub mod folder;
pub mod giveback;
pub mod headers;
pub mod merge;
pub mod migrate;
pub mod reindex;
pub mod search;
pub mod store;
