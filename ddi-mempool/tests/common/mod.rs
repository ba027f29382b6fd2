//! Shared helpers for the integration tests.
#![allow(dead_code)]

use ddi_kmem::{Arena, Checking, Response};

/// Loop counts: small under Miri.
pub const fn iters(native: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { native }
}

/// A checking arena with a budget, reporting misuse by panicking.
pub fn arena(name: &str, budget: usize) -> Arena {
    Arena::builder().name(name).budget(budget).checking(Checking::FULL).response(Response::Panic).build()
}

/// An arena with no budget.
pub fn unbounded(name: &str) -> Arena {
    Arena::builder().name(name).checking(Checking::FULL).response(Response::Panic).build()
}

/// An element pointer handed from one test thread to another.
pub struct SendPtr(pub *mut std::ffi::c_void);

// SAFETY: pool elements are plain memory owned by whoever holds them; the tests hand each one
// to exactly one other thread.
unsafe impl Send for SendPtr {}
