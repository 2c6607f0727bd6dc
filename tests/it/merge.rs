//! `mailvault merge` end to end (to be written).
