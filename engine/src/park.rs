//! (park: in progress)
