//! Verification (being written).
pub mod reference;
