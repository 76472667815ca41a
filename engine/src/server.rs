//! (server: in progress)
