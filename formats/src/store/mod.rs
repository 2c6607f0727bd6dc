//! Files of Kerio's message store that mailvault reads or writes:
//! `index.fld` (one line per item) and `status.fld` (folder attributes).

pub mod index_fld;
pub mod status_fld;
