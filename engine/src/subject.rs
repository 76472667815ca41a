//! (subject: in progress)
