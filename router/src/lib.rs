//! router (placeholder)
