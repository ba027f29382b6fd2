//! The tour: nullmod and ldterm pushed over the loopback driver, doing line editing.
//!
//! `cargo run --release -p examples --example tour`

fn main() {
    for line in examples::tour::run() {
        println!("{line}");
    }
}
