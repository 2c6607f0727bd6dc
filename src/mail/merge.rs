//! `merge` (to be written).
