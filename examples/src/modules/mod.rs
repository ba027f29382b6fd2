//! Ported STREAMS modules and drivers, shared by the examples, the tests and the benches.
//!
//! - [`nullmod`]: the pass-through module (LfS `nullmod`);
//! - [`loopback`]: a loopback (echo) driver: what goes down comes back up;
//! - [`flowmod`]: a pass-through module with service procedures that obey flow control;
//! - [`source`]: a driver whose read service procedure produces data under flow control;
//! - [`ldterm`]: a small line discipline written the way a C porter writes it (raw DDI).

pub mod flowmod;
pub mod ldterm;
pub mod loopback;
pub mod nullmod;
pub mod source;

use streams_core::{Streams, StreamsError};

/// Registers every module and driver of this crate with an executive: `nullmod`, `flowmod`,
/// `ldterm` (modules), `loopback` and `source` (drivers).
///
/// # Errors
/// As [`Streams::register_module`] (a name already taken by another module or driver).
pub fn register_all(sx: &Streams) -> Result<(), StreamsError> {
    sx.register_module::<nullmod::Nullmod>()?;
    sx.register_module::<flowmod::Flowmod>()?;
    ldterm::register(sx)?;
    sx.register_driver::<loopback::Loopback>()?;
    sx.register_driver::<source::Source>()?;
    Ok(())
}
