//! (sublist: in progress)
