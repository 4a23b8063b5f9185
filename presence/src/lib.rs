//! presence (placeholder)
