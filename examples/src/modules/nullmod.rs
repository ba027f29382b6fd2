//! `nullmod`: the pass-through module.
//!
//! What LfS's `nullmod` (and every textbook "null module") does: both put procedures pass
//! every message on with `putnext`; an `M_FLUSH` first flushes this module's queue on the
//! side it names (`FLUSHW` on the write side, `FLUSHR` on the read side, one band with
//! `FLUSHBAND`). It has no service procedures, so its queues never hold data and the flush is
//! a formality — but a module that may ever `putq` must flush, and a porter copies the shape.

use streams_core::{FLUSHR, FLUSHW, INFPSZ, M_FLUSH, Module, ModuleInfo, Msg, OpenCtx, QRef, flush_side};

/// The pass-through module; no per-instance state.
pub struct Nullmod;

impl Module for Nullmod {
    const INFO: ModuleInfo = ModuleInfo {
        mi_idnum: 5001,
        mi_idname: "nullmod",
        mi_minpsz: 0,
        mi_maxpsz: INFPSZ,
        mi_hiwat: 5120,
        mi_lowat: 1024,
    };

    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Nullmod)
    }

    // Inline: the put trampoline streams-core instantiates for this module calls it
    // (another crate's non-generic function is not inlined otherwise): one call per hop.
    #[inline]
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        if mp.msg_type() == M_FLUSH {
            flush_side(q, &mp, FLUSHW);
        }
        q.putnext(mp);
    }

    // Inline: the put trampoline streams-core instantiates for this module calls it
    // (another crate's non-generic function is not inlined otherwise): one call per hop.
    #[inline]
    fn rput(&self, q: QRef<'_>, mp: Msg) {
        if mp.msg_type() == M_FLUSH {
            flush_side(q, &mp, FLUSHR);
        }
        q.putnext(mp);
    }
}
