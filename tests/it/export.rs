//! `mailvault export` end to end (to be written).
