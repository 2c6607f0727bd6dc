//! Files of Kerio's message store that mailvault reads or writes:
//! `index.fld` (one line per item), `status.fld` (folder attributes) and
//! folder directory names (modified UTF-7, Maildir++ names).

pub mod folder_name;
pub mod index_fld;
pub mod status_fld;
