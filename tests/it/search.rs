//! `mailvault search` end to end (to be written).
