//! Private-network TCP links (`peerlet::private::SecureLink`): untrusted
//! bytes into a listener or a dialler in arbitrary chunks never panic and
//! never yield plaintext before a handshake; and after a real handshake, a
//! stream cut anywhere arrives intact, while a changed ciphertext byte ends
//! the link instead of delivering wrong plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::private::{NetworkSecret, PrivateNetwork, SecureLink};

fn network(node: u8) -> PrivateNetwork {
    PrivateNetwork::new(&NetworkSecret::from_bytes([7; 32]), [node; 32], None)
}

/// Feeds `bytes` to `link` in chunks of 1..=`chunk` bytes; returns the
/// plaintext it yields, or None once it fails.
fn feed(link: &mut SecureLink, bytes: &[u8], chunk: usize) -> Option<Vec<u8>> {
    let mut plain = Vec::new();
    let mut rest = bytes;
    let mut guard = 0;
    while !rest.is_empty() {
        guard += 1;
        assert!(guard < 1_000_000, "no progress");
        let step = chunk.max(1).min(rest.len());
        let n = link
            .read_input(|buf| {
                let n = buf.len().min(step);
                buf[..n].copy_from_slice(&rest[..n]);
                Ok(n)
            })
            .unwrap();
        rest = &rest[n..];
        let mut buf = [0u8; 700];
        loop {
            match link.read_plain(&mut buf) {
                Ok(0) => break,
                Ok(n) => plain.extend_from_slice(&buf[..n]),
                Err(_) => return None,
            }
        }
        if n == 0 && link.input_buffered() == 0 {
            break;
        }
    }
    Some(plain)
}

fn pass(from: &mut SecureLink, to: &mut SecureLink, chunk: usize) -> Option<Vec<u8>> {
    let out = from.output().to_vec();
    from.output_written(out.len());
    feed(to, &out, chunk)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&chunk, rest)) = rest.split_first() else {
        return;
    };
    let chunk = usize::from(chunk) + 1;
    match mode % 3 {
        0 | 1 => {
            // Strangers' bytes: nothing comes out before a handshake.
            let mut link = network(1).link(mode % 3 == 1).unwrap();
            if let Some(plain) = feed(&mut link, rest, chunk) {
                assert!(plain.is_empty(), "plaintext without a handshake");
            }
            assert!(!link.is_established());
        }
        _ => {
            let mut a = network(1).link(true).unwrap();
            let mut b = network(2).link(false).unwrap();
            assert_eq!(pass(&mut a, &mut b, chunk), Some(Vec::new()));
            assert_eq!(pass(&mut b, &mut a, chunk), Some(Vec::new()));
            assert_eq!(pass(&mut a, &mut b, chunk), Some(Vec::new()));
            assert!(a.is_established() && b.is_established());
            // The rest, minus its last two bytes, is the stream; those two
            // choose a ciphertext byte to change (0xffff: none).
            let (stream, flip) = match rest.len() {
                n if n >= 2 => (
                    &rest[..n - 2],
                    u16::from_be_bytes([rest[n - 2], rest[n - 1]]),
                ),
                _ => (rest, u16::MAX),
            };
            let mut sent = 0;
            let mut wire = Vec::new();
            while sent < stream.len() {
                sent += a.seal_from(&stream[sent..]).unwrap();
                wire.extend_from_slice(a.output());
                let n = a.output().len();
                a.output_written(n);
            }
            let changed = usize::from(flip) < wire.len();
            if changed {
                wire[usize::from(flip)] ^= 0x5a;
            }
            match feed(&mut b, &wire, chunk) {
                Some(plain) if !changed => assert_eq!(plain, stream),
                Some(plain) => {
                    // A changed length prefix can leave a frame incomplete:
                    // then what came out is a prefix of the truth.
                    assert!(stream.starts_with(&plain), "wrong plaintext delivered");
                }
                None => assert!(changed, "an intact stream failed"),
            }
        }
    }
});
