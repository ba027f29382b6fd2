//! nullmod: four pass-through modules pushed over the loopback driver; data and a flush pass.
//!
//! `cargo run --release -p examples --example nullmod`

use ddi_kmem::{Arena, Checking};
use examples::modules;
use streams_core::{FLUSHRW, Msg, Streams};

fn main() {
    let arena = Arena::builder().name("nullmod").checking(Checking::OFF).build();
    arena.run(|| {
        let sx = Streams::builder().arena(&arena).build();
        modules::register_all(&sx).unwrap();
        let s = sx.open("loopback", 0).unwrap();
        for _ in 0..4 {
            s.push("nullmod").unwrap();
        }
        println!("I_LIST: {:?}", s.modules());
        for word in ["through", "four", "nullmods", "and", "back"] {
            s.write(Msg::from_slice(word.as_bytes()).unwrap()).map_err(|(e, _)| e).unwrap();
            let m = s.read().unwrap().expect("looped back synchronously");
            println!("wrote {word:?}, read {:?}", String::from_utf8_lossy(m.data()));
        }
        s.flush(FLUSHRW).unwrap();
        println!("I_FLUSH FLUSHRW: passed down and reflected; head queue empty: {}", s.read().unwrap().is_none());
        s.pop().unwrap();
        println!("I_POP: {:?}", s.modules());
        s.close();
    });
    println!("arena bytes in use: {}", arena.bytes_in_use());
}
