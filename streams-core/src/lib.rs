//! SVR4 STREAMS over ddi-kmem.
//!
//! This crate will hold the STREAMS framework: `mblk`/`dblk` messages and the `allocb` family,
//! `bufcall`, queue pairs with put and service procedures, priority bands, flow control, the
//! service scheduler, stream heads, modules and drivers, and later the user side of a stream.
//! It is not built yet: nothing here is callable.
