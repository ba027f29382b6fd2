//! Flow control: QFULL above hiwat and cleared only below lowat or at zero, QWANTW,
//! canput/bcanput (a missing band counts as empty), canputnext looking at the nearest
//! queue with a service procedure, and back-enabling end to end through a stream.

mod common;

use common::mods::*;
use common::*;
use streams_core::*;

fn pq(q: *mut Queue, len: usize, band: u8) {
    let mp = block(&vec![7; len], M_DATA);
    mb(mp).b_band = band;
    // SAFETY: live queue, owned message.
    assert_eq!(unsafe { putq(q, mp) }, 1);
}

fn take(q: *mut Queue) {
    // SAFETY: live queue.
    let mp = unsafe { getq(q) };
    assert!(!mp.is_null());
    free(mp);
}

fn flag(q: *mut Queue) -> u32 {
    // SAFETY: live queue.
    unsafe { &*q }.flag()
}

#[test]
fn qfull_is_set_above_hiwat_and_cleared_only_below_lowat_or_at_zero() {
    in_arena("qfull", |_| {
        let q = allocq();
        // SAFETY: live queue.
        unsafe { strqset(q, QField::QHIWAT, 0, 10) };
        // SAFETY: live queue.
        unsafe { strqset(q, QField::QLOWAT, 0, 4) };
        pq(q, 5, 0);
        pq(q, 5, 0);
        assert_eq!(flag(q) & QFULL, 0, "count 10 == hiwat: not full (LfS: count > hiwat)");
        // SAFETY: live queue.
        assert_eq!(unsafe { canput(q) }, 1);
        pq(q, 1, 0);
        assert_ne!(flag(q) & QFULL, 0, "count 11 > hiwat");
        // SAFETY: live queue.
        assert_eq!(unsafe { canput(q) }, 0);
        assert_ne!(flag(q) & QWANTW, 0, "a failed canput marks the writer waiting");
        take(q); // 6 left
        assert_ne!(flag(q) & QFULL, 0, "6 >= lowat: still full (hysteresis)");
        take(q); // 1 left
        assert_eq!(flag(q) & QFULL, 0, "1 < lowat");
        assert_eq!(flag(q) & QWANTW, 0, "cleared with the back-enable");
        take(q);
        // SAFETY: ours.
        unsafe { freeq(q) };
    });
}

/// A queue shared by the threads of a test.
struct SharedQ(*mut Queue);
// SAFETY: queues are shared between threads by design (their state is behind their lock and
// atomics); the test frees it after the threads end.
unsafe impl Sync for SharedQ {}

#[test]
fn canput_racing_putq_and_getq_sees_qfull_come_and_go() {
    // canput reads a mirror of QFULL without the queue's lock and takes the lock only when
    // it finds the queue full (to set QWANTW); its answers stay those of the lock (checked
    // against QFULL under the lock in debug builds) while another thread fills and drains.
    let arena = ddi_kmem::Arena::builder().name("canput_race").build();
    let q = arena.run(|| {
        let q = allocq();
        // SAFETY: live queue.
        unsafe { strqset(q, QField::QHIWAT, 0, 10) };
        // SAFETY: live queue.
        unsafe { strqset(q, QField::QLOWAT, 0, 4) };
        q
    });
    let shared = SharedQ(q);
    let rounds = n(2000, 20);
    std::thread::scope(|sc| {
        let (arena, shared) = (&arena, &shared);
        sc.spawn(move || {
            let _a = arena.enter();
            for _ in 0..rounds {
                pq(shared.0, 6, 0);
                pq(shared.0, 6, 0); // 12 > hiwat: full
                take(shared.0); // 6 >= lowat: still full
                take(shared.0); // 0: not full
            }
        });
        sc.spawn(move || {
            for _ in 0..rounds {
                // SAFETY: live queue (freed after both threads end).
                let r = unsafe { canput(shared.0) };
                assert!(r == 0 || r == 1);
            }
        });
    });
    arena.run(|| {
        assert_eq!(flag(q) & QFULL, 0, "drained");
        // SAFETY: live queue.
        assert_eq!(unsafe { canput(q) }, 1);
        // SAFETY: ours.
        unsafe { freeq(q) };
    });
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn qfull_clears_at_zero_even_with_lowat_zero() {
    in_arena("qfull_zero", |_| {
        let q = allocq();
        // SAFETY: live queue.
        unsafe { strqset(q, QField::QHIWAT, 0, 2) };
        pq(q, 3, 0);
        assert_ne!(flag(q) & QFULL, 0);
        take(q);
        assert_eq!(flag(q) & QFULL, 0);
        // SAFETY: ours.
        unsafe { freeq(q) };
    });
}

#[test]
fn bands_have_their_own_water_marks_and_a_missing_band_is_empty() {
    in_arena("bands_fc", |_| {
        let q = allocq();
        // SAFETY: live queue.
        unsafe { strqset(q, QField::QHIWAT, 0, 10) };
        // SAFETY: live queue.
        unsafe { strqset(q, QField::QLOWAT, 0, 2) };
        // SAFETY: live queue.
        assert_eq!(unsafe { bcanput(q, 200) }, 1, "band 200 does not exist: empty");
        pq(q, 11, 2);
        // SAFETY: live queue.
        assert_eq!(unsafe { bcanput(q, 2) }, 0, "band 2 is full");
        // SAFETY: live queue.
        assert_ne!(unsafe { &*q }.band(2).unwrap().qb_flag & QB_WANTW, 0);
        // SAFETY: live queue.
        assert_eq!(unsafe { bcanput(q, 1) }, 1, "band 1 exists and is empty");
        // SAFETY: live queue.
        assert_eq!(unsafe { canput(q) }, 1, "band 0 counts separately");
        assert_eq!(flag(q) & QFULL, 0);
        take(q);
        // SAFETY: live queue.
        assert_eq!(unsafe { &*q }.band(2).unwrap().qb_flag & (QB_FULL | QB_WANTW), 0);
        // SAFETY: live queue.
        assert_eq!(unsafe { bcanput(q, 2) }, 1);
        // SAFETY: live queue.
        unsafe { freeq(q) };
    });
}

#[test]
fn canputnext_tests_the_nearest_queue_with_a_service_procedure() {
    in_arena("nfsrv", |arena| {
        let sx = executive(arena);
        let s = sx.open("sink", 0).unwrap();
        s.push("nullmod").unwrap();
        s.push("nullmod").unwrap();
        assert!(s.writable());
        // 70 bytes pass the two null modules (no service procedure) and fill the sink.
        s.write(msg_of(M_DATA, &[0; 70]).unwrap()).unwrap();
        assert!(!s.writable(), "the head looks past the null modules at the sink");
        // SAFETY: the sink's write queue.
        assert_ne!(unsafe { &*s.driver_wq() }.flag() & QWANTW, 0);
    });
}

#[test]
fn a_full_driver_back_enables_the_module_and_the_module_the_head() {
    in_arena("backenable", |arena| {
        let sx = executive(arena);
        let s = sx.open("sink", 0).unwrap();
        s.push("svcmod").unwrap();
        let mut sent = Vec::new();
        let mut i = 0u8;
        // Write 10-byte messages until the head is flow controlled: the sink (hiwat 64) and
        // then svcmod (hiwat 1024) fill.
        loop {
            let m = msg_of(M_DATA, &[i; 10]).unwrap();
            match s.write(m) {
                Ok(()) => {
                    sent.push(i);
                    i = i.wrapping_add(1);
                    sx.run_until_idle();
                }
                Err((EAGAIN, _)) => break,
                Err((e, _)) => panic!("write: {e}"),
            }
            assert!(sent.len() < 1000, "never flow controlled");
        }
        assert!(sent.len() > 100, "svcmod holds about a kilobyte: {}", sent.len());
        assert!(!s.writable());
        let svc_wq = {
            // SAFETY: the head write queue of the open stream.
            unsafe { &*s.head_wq() }.next()
        };
        // SAFETY: live queue.
        assert_ne!(unsafe { &*svc_wq }.flag() & QFULL, 0);
        assert_eq!(s.ioctl(SINK_COUNT, None).unwrap().rval, 0, "nothing eaten yet");
        // Open the gate: the sink drains, back-enables svcmod, which passes more down...
        s.ioctl(SINK_OPEN, None).unwrap();
        sx.run_until_idle();
        assert_eq!(s.ioctl(SINK_COUNT, None).unwrap().rval as usize, sent.len(), "everything arrived");
        assert!(s.writable(), "the head was back-enabled");
        // SAFETY: live queue.
        assert_eq!(unsafe { &*svc_wq }.flag() & (QFULL | QWANTW), 0);
    });
}

#[test]
fn the_head_read_queue_has_strhigh_strlow_and_back_enables_the_module_below() {
    in_arena("strhigh", |arena| {
        let sx = executive(arena);
        assert_eq!((sx.quirks().strhigh, sx.quirks().strlow), (5120, 1024));
        let s = sx.open("loop", 0).unwrap();
        s.push("svcmod").unwrap();
        let head = s.head_rq();
        // SAFETY: the head read queue of the open stream.
        assert_eq!((unsafe { &*head }.hiwat(), unsafe { &*head }.lowat()), (5120, 1024));
        // 100 messages of 100 bytes come back up; nobody reads.
        for i in 0..100u8 {
            s.write(msg_of(M_DATA, &[i; 100]).unwrap()).unwrap();
            sx.run_until_idle();
        }
        // SAFETY: as above.
        let at_head = unsafe { qsize(head) };
        assert_eq!(at_head, 52, "the head fills just past STRHIGH (5200 > 5120 bytes)");
        // SAFETY: as above.
        assert_ne!(unsafe { &*head }.flag() & QFULL, 0);
        let svc_rq = {
            // SAFETY: the driver's read queue; its next is svcmod's read queue.
            unsafe { &*s.driver_rq() }.next()
        };
        // SAFETY: svcmod's read queue.
        assert_eq!(unsafe { qsize(svc_rq) }, 48, "the rest waits in svcmod (flow controlled)");
        // Read until the head drops below STRLOW: svcmod is back-enabled and refills it.
        let mut got = Vec::new();
        for _ in 0..42 {
            got.push(s.read().unwrap().unwrap().data()[0]);
        }
        // SAFETY: as above.
        assert_eq!(unsafe { qsize(head) }, 10, "1000 bytes < STRLOW: back-enable pending");
        sx.run_until_idle();
        while let Some(m) = s.read().unwrap() {
            got.push(m.data()[0]);
            sx.run_until_idle();
        }
        assert_eq!(got, (0..100).collect::<Vec<u8>>(), "all, in order");
    });
}

#[test]
fn putctl_and_putnextctl_send_control_messages_and_refuse_data_types() {
    in_arena("putctl", |arena| {
        let sx = executive(arena);
        let s = sx.open("hold", 0).unwrap();
        let dw = s.driver_wq();
        // SAFETY: the driver's write queue of the open stream.
        unsafe {
            assert_eq!(putctl(dw, M_DATA), 0, "a data type is refused");
        }
        // SAFETY: as above.
        unsafe {
            assert_eq!(putctl1(dw, M_CTL, 7), 1);
        }
        // SAFETY: as above.
        unsafe {
            assert_eq!(putctl(dw, M_DELAY), 1, "M_DELAY is allowed");
        }
        // SAFETY: the head write queue: its next is the driver.
        unsafe {
            assert_eq!(putnextctl1(s.head_wq(), M_PCCTL, 9), 1);
        }
        // SAFETY: as above.
        assert_eq!(unsafe { qsize(dw) }, 3);
        // SAFETY: as above.
        let first = unsafe { getq(dw) };
        assert_eq!((mr(first).msg_type(), mr(first).data()), (M_PCCTL, &[9u8][..]), "high priority first");
        free(first);
    });
}
