//! (ring: in progress)
