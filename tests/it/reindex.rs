//! `mailvault reindex` end to end (to be written).
