//! stockcast
