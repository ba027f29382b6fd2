//! loopback: the echo driver alone: data comes back, M_FLUSH is reflected, ioctls answered.
//!
//! `cargo run --release -p examples --example loopback`

use ddi_kmem::{Arena, Checking};
use examples::modules::{self, loopback};
use streams_core::{FLUSHRW, M_PROTO, Msg, Streams, msg_of};

fn main() {
    let arena = Arena::builder().name("loopback").checking(Checking::OFF).build();
    arena.run(|| {
        let sx = Streams::builder().arena(&arena).build();
        modules::register_all(&sx).unwrap();
        let s = sx.open("loopback", 0).unwrap();
        s.write(Msg::from_slice(b"echo").unwrap()).map_err(|(e, _)| e).unwrap();
        s.write(msg_of(M_PROTO, b"proto").unwrap()).map_err(|(e, _)| e).unwrap();
        while let Some(m) = s.read().unwrap() {
            println!("read {:?} {:?}", m.msg_type(), String::from_utf8_lossy(m.data()));
        }
        s.write(Msg::from_slice(b"flushed before read").unwrap()).map_err(|(e, _)| e).unwrap();
        s.flush(FLUSHRW).unwrap();
        println!("after I_FLUSH FLUSHRW the head holds: {:?}", s.read().unwrap().map(|m| m.data().to_vec()));
        let r = s.ioctl(loopback::LB_ECHO, Some(Msg::from_slice(b"ioctl data").unwrap())).unwrap();
        println!("LB_ECHO: rval {}, data {:?}", r.rval, r.data.as_ref().map(|d| String::from_utf8_lossy(d.data())));
        println!("LB_COUNT: {}", s.ioctl(loopback::LB_COUNT, None).unwrap().rval);
        println!("unknown ioctl: errno {}", s.ioctl(0x7777, None).unwrap_err());
        s.close();
    });
    println!("arena bytes in use: {}", arena.bytes_in_use());
}
