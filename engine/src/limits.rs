//! (limits: in progress)
