//! The tour: a stream with `nullmod` and `ldterm` pushed over the `loopback` driver.
//!
//! What a terminal line looks like through STREAMS: the user's keystrokes go down (here they
//! are looped back by the driver as if typed), `ldterm` assembles them into lines with erase
//! and kill handling, and the head reads whole lines. `ioctl`s pass through the modules to
//! whichever answers: `ldterm` answers `TCGETA`/`TCSETA`, the driver the rest.

use crate::modules::{self, ldterm, loopback};
use ddi_kmem::{Arena, Checking};
use streams_core::{FLUSHRW, Msg, Streams};

/// Runs the tour in a fresh arena and returns its transcript, one line per step. Panics if a
/// step does not do what it says (the test checks the transcript too).
pub fn run() -> Vec<String> {
    let arena = Arena::builder().name("tour").checking(Checking::OFF).build();
    let mut out = Vec::new();
    arena.run(|| {
        let sx = Streams::builder().arena(&arena).build();
        modules::register_all(&sx).expect("register the tour's modules");
        let s = sx.open("loopback", 0).expect("open loopback");
        s.push("nullmod").expect("I_PUSH nullmod");
        s.push("ldterm").expect("I_PUSH ldterm");
        out.push(format!("I_LIST: {:?} over loopback", s.modules()));

        let read_lines = |s: &streams_core::Stream, out: &mut Vec<String>| {
            while let Some(m) = s.read().expect("read") {
                out.push(format!("read {:?}", String::from_utf8_lossy(m.data())));
            }
        };

        // Typing with mistakes: backspace (0x08) erases a byte, ^U (0x15) the line so far.
        let typed: [&[u8]; 4] = [b"hellp\x08o wrl", b"d\x15hello, ", b"world\nsecond ", b"line\n"];
        for chunk in typed {
            out.push(format!("write {:?}", String::from_utf8_lossy(chunk)));
            s.write(Msg::from_slice(chunk).expect("allocb")).map_err(|(e, _)| e).expect("write");
            read_lines(&s, &mut out);
        }

        // TCGETA answered by ldterm with data; TCSETA changes the erase character to '#'.
        let r = s.ioctl(ldterm::TCGETA, None).expect("TCGETA");
        let cc = r.data.as_ref().map(|d| d.data().to_vec()).unwrap_or_default();
        out.push(format!("TCGETA: erase {:#04x}, kill {:#04x}", cc[ldterm::VERASE], cc[ldterm::VKILL]));
        let mut new = [0u8; 8];
        new.copy_from_slice(&cc);
        new[ldterm::VERASE] = b'#';
        s.ioctl(ldterm::TCSETA, Some(Msg::from_slice(&new).expect("allocb"))).expect("TCSETA");
        out.push("TCSETA: erase '#'".to_string());
        s.write(Msg::from_slice(b"cst#at\n").expect("allocb")).map_err(|(e, _)| e).expect("write");
        out.push("write \"cst#at\\n\"".to_string());
        read_lines(&s, &mut out);

        // A partial line is discarded by a flush; ioctls ldterm does not know reach the driver.
        s.write(Msg::from_slice(b"never ends").expect("allocb")).map_err(|(e, _)| e).expect("write");
        s.flush(FLUSHRW).expect("I_FLUSH");
        s.write(Msg::from_slice(b"after flush\n").expect("allocb")).map_err(|(e, _)| e).expect("write");
        out.push("write \"never ends\", I_FLUSH FLUSHRW, write \"after flush\\n\"".to_string());
        read_lines(&s, &mut out);
        let n = s.ioctl(loopback::LB_COUNT, None).expect("LB_COUNT").rval;
        out.push(format!("LB_COUNT (answered by the driver): {n} messages looped"));
        let e = s.ioctl(0x1234, None).expect_err("unknown ioctl");
        out.push(format!("ioctl 0x1234: M_IOCNAK, errno {e}"));
        s.close();
    });
    assert_eq!(arena.bytes_in_use(), 0, "tour: memory left in use");
    out.push(format!("arena bytes in use after close: {}", arena.bytes_in_use()));
    out
}
