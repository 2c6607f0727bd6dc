//! `migrate` (to be written).
