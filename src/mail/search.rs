//! `search` (to be written).
