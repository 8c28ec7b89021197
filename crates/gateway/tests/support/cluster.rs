//! Multi-node test support (Redis + several gateway processes).
