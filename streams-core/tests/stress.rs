//! The worker-pool scheduler under stress: two workers, a million messages (fewer under
//! Miri) written at the head of a stream with service procedures on both sides, looped back
//! by the driver and read at the head by another thread: nothing lost, nothing reordered
//! within a band, all memory returned.

mod common;

use common::*;
use ddi_kmem::{Arena, Checking};
use streams_core::*;

const BANDS: u8 = 3;

#[test]
fn two_workers_a_million_messages_nothing_lost_or_reordered() {
    let total: u32 = n(1_000_000, 300) as u32;
    // Unchecked memory: the checked path's per-buffer table would dominate the run.
    let arena = Arena::builder().name("stress").checking(Checking::OFF).build();
    {
        let sx = Streams::builder().arena(&arena).workers(2).name("stress").build();
        common::mods::register_all(&sx);
        let s = arena.run(|| sx.open("loop", 0)).unwrap();
        arena.run(|| s.push("svcmod")).unwrap();
        arena.run(|| s.push("nullmod")).unwrap();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let _a = arena.enter();
                for i in 0..total {
                    let band = (i % u32::from(BANDS)) as u8;
                    let mut m = Msg::alloc(8, BPRI_MED).expect("memory");
                    m.extend_from_slice(&i.to_le_bytes()).unwrap();
                    m.set_band(band);
                    if let Err((e, _)) = s.write_wait(m) {
                        panic!("write {i}: errno {e}");
                    }
                }
            });
            let _a = arena.enter();
            let mut last = [None::<u32>; BANDS as usize];
            let mut got = 0u32;
            while got < total {
                let m = s.read_wait().unwrap().expect("no hangup");
                let i = u32::from_le_bytes(m.data()[..4].try_into().unwrap());
                let band = usize::from(m.b_band);
                assert_eq!(i % u32::from(BANDS), band as u32, "band kept");
                if let Some(prev) = last[band] {
                    assert!(i > prev, "band {band}: {i} after {prev}");
                }
                last[band] = Some(i);
                got += 1;
            }
            writer.join().unwrap();
        });
        sx.run_until_idle();
        assert!(s.read().unwrap().is_none(), "nothing extra");
        assert!(sx.take_errors().is_empty());
        arena.run(|| s.close());
    }
    assert_eq!(arena.bytes_in_use(), 0);
}
