//! Locks (the ground layer).

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, whatever a panicking holder left in it: every state flux-recv keeps behind a
/// mutex stays consistent between statements, and a panic in one request must not take the
/// others down.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
