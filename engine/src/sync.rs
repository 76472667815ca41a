//! (sync: in progress)
