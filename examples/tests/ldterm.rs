//! ldterm (C-style, raw DDI): assembles lines from M_DATA with erase and kill characters,
//! sends one M_DATA per complete line, answers TCGETA/TCSETA with M_IOCACK carrying data,
//! discards the partial line on FLUSHR, passes everything else.

mod common;

use common::*;
use examples::modules::ldterm::{CERASE, CKILL, LDTERM_LINE_MAX, TCGETA, TCSETA, VERASE, VKILL};
use examples::modules::loopback::LB_COUNT;
use streams_core::*;

fn ldterm_stream(sx: &Streams) -> Stream {
    let s = sx.open("loopback", 0).unwrap();
    s.push("ldterm").unwrap();
    s
}

#[test]
fn lines_are_assembled_across_writes_with_erase_and_kill() {
    in_stream_arena("ld_lines", 0, |sx| {
        let s = ldterm_stream(sx);
        write(&s, b"hel");
        assert!(read_all(&s).is_empty(), "no line yet");
        write(&s, b"lp\x08o\n");
        assert_eq!(read_all(&s), [b"hello\n".to_vec()]);
        write(&s, b"garbage\x15good\x08\x08\x08\x08\x08ok\nnext\nand ");
        assert_eq!(read_all(&s), [b"ok\n".to_vec(), b"next\n".to_vec()], "erase at an empty line is harmless");
        write(&s, b"last\n");
        assert_eq!(read_all(&s), [b"and last\n".to_vec()]);
        s.close();
    });
}

#[test]
fn a_chained_message_is_read_block_by_block() {
    in_stream_arena("ld_chain", 0, |sx| {
        let s = ldterm_stream(sx);
        let mut m = Msg::from_slice(b"ab").unwrap();
        m.link(Msg::from_slice(b"c\x08d\n").unwrap());
        m.link(Msg::from_slice(b"e\n").unwrap());
        s.write(m).map_err(|(e, _)| e).unwrap();
        assert_eq!(read_all(&s), [b"abd\n".to_vec(), b"e\n".to_vec()]);
        s.close();
    });
}

#[test]
fn an_overlong_line_is_sent_when_full() {
    in_stream_arena("ld_long", 0, |sx| {
        let s = ldterm_stream(sx);
        write(&s, &[b'x'; LDTERM_LINE_MAX + 10]);
        let got = read_all(&s);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0], vec![b'x'; LDTERM_LINE_MAX]);
        write(&s, b"\n");
        assert_eq!(read_all(&s), [[vec![b'x'; 10], b"\n".to_vec()].concat()]);
        s.close();
    });
}

#[test]
fn tcgeta_returns_the_control_characters_and_tcseta_changes_them() {
    in_stream_arena("ld_ioctl", 0, |sx| {
        let s = ldterm_stream(sx);
        let r = s.ioctl(TCGETA, Some(Msg::from_slice(b"ignored").unwrap())).unwrap();
        let cc = r.data.as_ref().unwrap().data().to_vec();
        drop(r);
        assert_eq!(cc.len(), 8);
        assert_eq!((cc[VERASE], cc[VKILL]), (CERASE, CKILL));
        let mut new = cc.clone();
        new[VERASE] = b'#';
        new[VKILL] = b'@';
        let r = s.ioctl(TCSETA, Some(Msg::from_slice(&new).unwrap())).unwrap();
        assert!(r.data.is_none(), "TCSETA returns no data");
        assert_eq!(s.ioctl(TCGETA, None).unwrap().data.unwrap().data(), &new[..]);
        write(&s, b"ab#c\x08\nxyz@ok\n");
        assert_eq!(read_all(&s), [b"ac\x08\n".to_vec(), b"ok\n".to_vec()], "the new characters; backspace is data");
        s.close();
    });
}

#[test]
fn tcseta_without_enough_data_is_refused_with_einval() {
    in_stream_arena("ld_ioctl_bad", 0, |sx| {
        let s = ldterm_stream(sx);
        assert_eq!(s.ioctl(TCSETA, None).unwrap_err(), EINVAL);
        assert_eq!(s.ioctl(TCSETA, Some(Msg::from_slice(b"short").unwrap())).unwrap_err(), EINVAL);
        let r = s.ioctl(TCGETA, None).unwrap();
        assert_eq!(r.data.unwrap().data()[VERASE], CERASE, "unchanged");
        s.close();
    });
}

#[test]
fn other_ioctls_and_messages_pass_through_to_the_driver_and_back() {
    in_stream_arena("ld_pass", 0, |sx| {
        let s = ldterm_stream(sx);
        s.push("nullmod").unwrap();
        s.write(msg_of(M_PROTO, b"proto, no newline").unwrap()).unwrap();
        let m = s.read().unwrap().unwrap();
        assert_eq!((m.msg_type(), m.data()), (M_PROTO, &b"proto, no newline"[..]));
        drop(m);
        assert_eq!(s.ioctl(LB_COUNT, None).unwrap().rval, 1, "answered by the loopback driver");
        assert_eq!(s.ioctl(0x4242, None).unwrap_err(), EINVAL, "refused by the driver");
        s.close();
    });
}

#[test]
fn flushr_discards_the_partial_line_and_close_frees_one() {
    in_stream_arena("ld_flush", 0, |sx| {
        let s = ldterm_stream(sx);
        write(&s, b"discard me");
        s.flush(FLUSHW).unwrap();
        write(&s, b"\n");
        assert_eq!(read_all(&s), [b"discard me\n".to_vec()], "FLUSHW leaves the read side's line");
        write(&s, b"discard me");
        s.flush(FLUSHR).unwrap();
        write(&s, b"kept\n");
        assert_eq!(read_all(&s), [b"kept\n".to_vec()]);
        write(&s, b"left in the module at close");
        s.close(); // the in_stream_arena check: every byte back
    });
}

#[test]
fn ldterm_refuses_to_be_opened_as_a_driver() {
    in_stream_arena("ld_driver", 0, |sx| {
        assert!(sx.open("ldterm", 0).is_err());
    });
}
