//! flowmod: service procedures obeying flow control. The writer stops (EAGAIN) when flowmod's
//! write queue is full; when the reader does not read, flowmod's read service procedure stops
//! (putbq) once the head's read queue is full, and resumes, back-enabled, when it reads.
//!
//! `cargo run --release -p examples --example flowmod`

use ddi_kmem::{Arena, Checking};
use examples::modules::{self, flowmod};
use streams_core::{EAGAIN, Msg, QFULL, Streams};

fn stats(s: &streams_core::Stream) -> flowmod::FlowStats {
    let r = s.ioctl(flowmod::FM_STATS, None).unwrap();
    flowmod::FlowStats::from_bytes(r.data.unwrap().data()).unwrap()
}

fn main() {
    let arena = Arena::builder().name("flowmod").checking(Checking::OFF).build();
    arena.run(|| {
        // Deterministic executive: service procedures run only when we run the scheduler.
        let sx = Streams::builder().arena(&arena).build();
        modules::register_all(&sx).unwrap();
        let s = sx.open("loopback", 0).unwrap();
        s.push("flowmod").unwrap();
        // SAFETY: the head's write queue is live while the stream is open; q_next of it is
        // flowmod's write queue (plumbing does not change here).
        let fm_wq = unsafe { (*s.head_wq()).next() };
        let mut written = 0u32;
        loop {
            match s.write(Msg::from_slice(&[written as u8; 64]).unwrap()) {
                Ok(()) => written += 1,
                Err((EAGAIN, _)) => break,
                Err((e, _)) => panic!("write: {e}"),
            }
        }
        // SAFETY: as above.
        let full = unsafe { (*fm_wq).flag() } & QFULL != 0;
        println!("writer: {written} messages written, then EAGAIN (flowmod write queue QFULL: {full})");
        sx.run_until_idle();
        let st = stats(&s);
        // SAFETY: the head's read queue, live while the stream is open.
        let head_count = unsafe { (*s.head_rq()).count() };
        println!(
            "scheduler ran: flowmod forwarded {} down, {} up; head holds {head_count} bytes",
            st.w_forwarded, st.r_forwarded
        );
        for _ in 0..200 {
            if s.write(Msg::from_slice(&[0; 64]).unwrap()).is_ok() {
                written += 1;
            }
            sx.run_until_idle();
        }
        let st = stats(&s);
        println!(
            "reader idle: {written} written; read service procedure stopped {} times (putbq), forwarded {} up",
            st.r_blocked, st.r_forwarded
        );
        let mut read = 0u32;
        while let Some(_m) = s.read_wait().unwrap() {
            read += 1;
        }
        let st = stats(&s);
        println!("reader reads: {read} messages read; back-enabled, flowmod forwarded {} up in all", st.r_forwarded);
        s.close();
    });
    println!("arena bytes in use: {}", arena.bytes_in_use());
}
