//! `reindex` (to be written).
