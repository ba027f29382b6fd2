//! The memory-layer tour: the same `kmem_*` calls under every personality, as a table.
//!
//! `cargo run --release --example vendor_table`

fn main() {
    println!("ddi-kmem: one scenario, every vendor (each cell is what the calls returned)\n");
    print!("{}", examples::kmem_vendor_matrix());
    println!("\nLfS = Linux Fast-STREAMS (native). Arenas check misuse and report instead of panicking here.");
}
