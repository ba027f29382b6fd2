//! Band ordering as a property: random putq/putbq/getq/rmvq/flushband sequences against a
//! model (a list kept in class order: high priority, bands 255..1, band 0; FIFO within a
//! class), checking order, q_count, band counts and qsize after every step.

mod common;

use common::*;
use proptest::prelude::*;
use streams_core::*;

/// 256 for high priority, else the band.
type Class = u16;

#[derive(Clone, Debug)]
enum Op {
    Put(Class, u8),
    Putbq(Class, u8),
    Get,
    Rmv(usize),
    FlushBand(u8),
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![Just(256u16), Just(0u16), 0u16..6, Just(255u16)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (class(), 1u8..9).prop_map(|(c, n)| Op::Put(c, n)),
        2 => (class(), 1u8..9).prop_map(|(c, n)| Op::Putbq(c, n)),
        3 => Just(Op::Get),
        1 => (0usize..64).prop_map(Op::Rmv),
        1 => prop_oneof![Just(0u8), 1u8..6].prop_map(Op::FlushBand),
    ]
}

/// (class, id, size) of each queued message, in queue order.
type Model = Vec<(Class, u32, usize)>;

fn new_msg(c: Class, id: u32, size: u8) -> *mut Mblk {
    let mut bytes = vec![0u8; usize::from(size).max(4)];
    bytes[..4].copy_from_slice(&id.to_le_bytes());
    let t = if c == 256 { M_PCPROTO } else { M_DATA };
    let mp = block(&bytes, t);
    // A high-priority message gets a random-ish band, which putq must force to 0.
    mb(mp).b_band = if c == 256 { (id % 7) as u8 } else { c as u8 };
    mp
}

fn id_of(mp: *mut Mblk) -> u32 {
    u32::from_le_bytes(mr(mp).data()[..4].try_into().unwrap())
}

fn check(q: *mut Queue, model: &Model) {
    let mut ids = Vec::new();
    // SAFETY: live queue, used by this thread only.
    let qr = unsafe { &*q };
    let mut mp = qr.first();
    while !mp.is_null() {
        ids.push(id_of(mp));
        mp = mr(mp).b_next;
    }
    let want: Vec<u32> = model.iter().map(|e| e.1).collect();
    assert_eq!(ids, want, "queue order");
    let count: usize = model.iter().filter(|e| e.0 == 0 || e.0 == 256).map(|e| e.2).sum();
    assert_eq!(qr.count(), count, "q_count");
    for b in 1..=5u8 {
        let n: usize = model.iter().filter(|e| e.0 == u16::from(b)).map(|e| e.2).sum();
        assert_eq!(qr.band(b).map_or(0, |x| x.qb_count), n, "band {b} count");
    }
    // SAFETY: live queue.
    assert_eq!(unsafe { qsize(q) } as usize, model.len());
}

fn run(ops: Vec<Op>) {
    in_arena("band_props", |_| {
        let q = allocq();
        let mut model: Model = Vec::new();
        let mut next_id = 0u32;
        for op in ops {
            match op {
                Op::Put(c, n) | Op::Putbq(c, n) => {
                    next_id += 1;
                    let mp = new_msg(c, next_id, n);
                    let size = mr(mp).len();
                    let back = matches!(op, Op::Putbq(..));
                    let r = if back {
                        // SAFETY: live queue, owned message.
                        unsafe { putbq(q, mp) }
                    } else {
                        // SAFETY: live queue, owned message.
                        unsafe { putq(q, mp) }
                    };
                    assert_eq!(r, 1);
                    if c == 256 {
                        assert_eq!(mr(mp).b_band, 0, "high priority forced to band 0");
                    }
                    let pos = if back {
                        model.iter().position(|e| e.0 <= c).unwrap_or(model.len())
                    } else {
                        model.iter().position(|e| e.0 < c).unwrap_or(model.len())
                    };
                    model.insert(pos, (c, next_id, size));
                }
                Op::Get => {
                    // SAFETY: live queue.
                    let mp = unsafe { getq(q) };
                    if model.is_empty() {
                        assert!(mp.is_null());
                    } else {
                        let e = model.remove(0);
                        assert_eq!(id_of(mp), e.1);
                        free(mp);
                    }
                }
                Op::Rmv(i) => {
                    if !model.is_empty() {
                        let i = i % model.len();
                        // SAFETY: live queue.
                        let mut mp = unsafe { &*q }.first();
                        for _ in 0..i {
                            mp = mr(mp).b_next;
                        }
                        // SAFETY: `mp` is on `q`.
                        unsafe { rmvq(q, mp) };
                        assert_eq!(id_of(mp), model.remove(i).1);
                        free(mp);
                    }
                }
                Op::FlushBand(b) => {
                    // SAFETY: live queue.
                    let exists = usize::from(b) <= unsafe { &*q }.nband();
                    // SAFETY: live queue.
                    unsafe { flushband(q, b, FLUSHALL) };
                    if exists {
                        model.retain(|e| if b == 0 { e.0 != 0 && e.0 != 256 } else { e.0 != u16::from(b) });
                    }
                }
            }
            check(q, &model);
        }
        // SAFETY: ours; frees what is left.
        unsafe { freeq(q) };
    });
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::default()
    })]
    #[test]
    fn band_order_matches_the_model(ops in prop::collection::vec(op(), 0..if cfg!(miri) { 12 } else { 60 })) {
        run(ops);
    }
}
