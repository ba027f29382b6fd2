//! ldterm: the C-style line discipline over the loopback driver.
//!
//! `cargo run --release -p examples --example ldterm`

use ddi_kmem::{Arena, Checking};
use examples::modules::{self, ldterm};
use streams_core::{Msg, Streams};

fn main() {
    let arena = Arena::builder().name("ldterm").checking(Checking::OFF).build();
    arena.run(|| {
        let sx = Streams::builder().arena(&arena).build();
        modules::register_all(&sx).unwrap();
        let s = sx.open("loopback", 0).unwrap();
        s.push("ldterm").unwrap();
        for typed in [&b"ls -l\x08\x08a\n"[..], b"rm -rf /\x15echo safe\n", b"two\nlines\n", b"partial"] {
            s.write(Msg::from_slice(typed).unwrap()).map_err(|(e, _)| e).unwrap();
            print!("typed {:?} ->", String::from_utf8_lossy(typed));
            while let Some(m) = s.read().unwrap() {
                print!(" line {:?}", String::from_utf8_lossy(m.data()));
            }
            println!();
        }
        let t = s.ioctl(ldterm::TCGETA, None).unwrap();
        println!("TCGETA c_cc: {:?}", t.data.map(|d| d.data().to_vec()));
        s.close(); // the partial line is freed by ldterm's close
    });
    println!("arena bytes in use: {}", arena.bytes_in_use());
}
