//! Tandem
