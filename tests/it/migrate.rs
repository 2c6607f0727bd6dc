//! `mailvault migrate` end to end (to be written).
