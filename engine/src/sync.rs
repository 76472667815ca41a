//! The concurrency primitives the [`ring`](crate::ring) and [`park`](crate::park) modules are
//! built on: std's, or [loom]'s under `cfg(engine_loom)` so that the model checker sees every atomic
//! access, every fence and every slot access.
//!
//! The two sides expose the same surface. The only difference a caller can notice is
//! [`UnsafeCell`]: std's cell hands out raw pointers with `get`, loom's tracks each access, so
//! both are used through the closure-based `with` / `with_mut` API that loom defines.
//!
//! The loom models are unit tests of the library in `src/loom_models.rs`, compiled only with
//! `--cfg engine_loom`; run them with:
//!
//! ```text
//! bash scripts/loom.sh
//! ```
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(engine_loom))]
pub use std::sync::Arc;
#[cfg(not(engine_loom))]
pub use std::thread;

#[cfg(engine_loom)]
pub use loom::cell::UnsafeCell;
#[cfg(engine_loom)]
pub use loom::sync::Arc;
#[cfg(engine_loom)]
pub use loom::thread;

/// Atomic integers, flags and fences.
pub mod atomic {
    #[cfg(not(engine_loom))]
    pub use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};

    #[cfg(engine_loom)]
    pub use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
}

/// `std::cell::UnsafeCell` behind loom's closure-based API, so the ring compiles unchanged
/// against either.
///
/// The closures receive raw pointers; dereferencing them is the caller's (unsafe)
/// responsibility, exactly as with `std::cell::UnsafeCell::get`.
#[cfg(not(engine_loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(engine_loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    #[inline]
    pub const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a shared raw pointer to the contents.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a mutable raw pointer to the contents.
    #[inline(always)]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }

    /// Unwraps the value.
    #[inline]
    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }
}
