//! `export` (to be written).
