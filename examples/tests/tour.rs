//! The tour: nullmod and ldterm over loopback, line editing, ioctls, a flush.

#[test]
fn the_tour_edits_lines_answers_ioctls_and_returns_all_memory() {
    let t = examples::tour::run();
    let has = |l: &str| assert!(t.iter().any(|x| x == l), "missing {l:?} in {t:#?}");
    has("I_LIST: [\"ldterm\", \"nullmod\"] over loopback");
    has("read \"hello, world\\n\"");
    has("read \"second line\\n\"");
    has("TCGETA: erase 0x08, kill 0x15");
    has("read \"csat\\n\"");
    has("read \"after flush\\n\"");
    has("LB_COUNT (answered by the driver): 7 messages looped");
    has("ioctl 0x1234: M_IOCNAK, errno 22");
    has("arena bytes in use after close: 0");
    assert!(!t.iter().any(|x| x.contains("never ends") && x.starts_with("read")), "the flushed partial line");
}
