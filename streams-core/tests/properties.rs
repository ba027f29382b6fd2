//! Model-based properties: the size functions, `adjmsg` and `pullupmsg` against a model of
//! the chain as a list of (type, bytes).

mod common;

use common::*;
use proptest::prelude::*;
use streams_core::*;

type Model = Vec<(MsgType, Vec<u8>)>;

fn build(model: &Model) -> *mut Mblk {
    let mut head: *mut Mblk = std::ptr::null_mut();
    for (t, bytes) in model {
        let b = block(bytes, *t);
        if head.is_null() {
            head = b;
        } else {
            // SAFETY: allocated, distinct messages.
            unsafe { linkb(head, b) };
        }
    }
    head
}

fn leading(model: &Model) -> usize {
    let t = model[0].0;
    model.iter().take_while(|(u, _)| *u == t).map(|(_, b)| b.len()).sum()
}

fn trailing(model: &Model) -> usize {
    let t = model.last().unwrap().0;
    model.iter().rev().take_while(|(u, _)| *u == t).map(|(_, b)| b.len()).sum()
}

fn flat(model: &Model) -> Vec<u8> {
    model.iter().flat_map(|(_, b)| b.iter().copied()).collect()
}

fn chain() -> impl Strategy<Value = Model> {
    let block = (prop_oneof![Just(M_DATA), Just(M_PROTO)], proptest::collection::vec(any::<u8>(), 0..200));
    proptest::collection::vec(block, 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 3 } else { 128 },
        // Miri's isolation has no `getcwd`, which the failure file needs.
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::default()
    })]

    #[test]
    fn sizes_match_the_model(model in chain()) {
        in_arena("prop_sizes", |_| {
            let mp = build(&model);
            let data: usize = model.iter().filter(|(t, _)| *t == M_DATA).map(|(_, b)| b.len()).sum();
            // SAFETY: an allocated message.
            let d = unsafe { msgdsize(mp) };
            // SAFETY: as above.
            let s = unsafe { msgsize(mp) };
            // SAFETY: as above.
            let x = unsafe { xmsgsize(mp) };
            free(mp);
            assert_eq!((d, s, x), (data, flat(&model).len(), leading(&model)));
        });
    }

    #[test]
    fn adjmsg_matches_the_model(model in chain(), len in -400isize..400) {
        in_arena("prop_adjmsg", |_| {
            let mp = build(&model);
            // SAFETY: an allocated message we own.
            let ok = unsafe { adjmsg(mp, len) };
            let all = flat(&model);
            let expect = if len == 0 {
                Some(all.clone())
            } else if len > 0 && len.unsigned_abs() <= leading(&model) {
                Some(all[len.unsigned_abs()..].to_vec())
            } else if len < 0 && len.unsigned_abs() <= trailing(&model) {
                Some(all[..all.len() - len.unsigned_abs()].to_vec())
            } else {
                None
            };
            let got = bytes_of(mp);
            let blocks = std::iter::successors(Some(mp), |&b| Some(mb(b).b_cont).filter(|p| !p.is_null())).count();
            free(mp);
            assert_eq!(blocks, model.len(), "adjmsg never frees blocks");
            match expect {
                Some(v) => { assert_eq!(ok, 1); assert_eq!(got, v); }
                None => { assert_eq!(ok, 0); assert_eq!(got, all); }
            }
        });
    }

    #[test]
    fn pullupmsg_keeps_the_bytes_and_joins_the_leading_run(model in chain(), len in -1isize..300) {
        in_arena("prop_pullup", |_| {
            let mp = build(&model);
            // SAFETY: an allocated message we own.
            let ok = unsafe { pullupmsg(mp, len) };
            let want = if len == -1 { leading(&model) } else { len.unsigned_abs() };
            let first = mb(mp).len();
            let got = bytes_of(mp);
            free(mp);
            assert_eq!(got, flat(&model), "pullupmsg never loses or reorders bytes");
            if want <= leading(&model) {
                assert_eq!(ok, 1);
                assert!(first >= want);
            } else {
                assert_eq!(ok, 0);
            }
        });
    }
}
