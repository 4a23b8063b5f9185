//! Property tests of the parser and the stream framer on hostile input: random bytes and random
//! mutations of the valid fixtures in `tests/data` must never make `parse` or `StreamFramer`
//! panic, and whatever `parse` accepts must serialize to bytes it accepts again. A stream of valid
//! messages cut at random points must come out of the framer unchanged.

// Test set-up: a missing fixture is a bug to see at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use sip::message::{parse, FrameError, Framed, StreamFramer};

/// The valid fixtures (every file whose VERDICTS line says `valid`), loaded once.
fn valid_fixtures() -> &'static [Vec<u8>] {
    static FIXTURES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let verdicts = std::fs::read_to_string(dir.join("VERDICTS")).expect("read VERDICTS");
        verdicts
            .lines()
            .filter_map(|l| {
                let mut fields = l.split_whitespace();
                let name = fields.next()?;
                (fields.next() == Some("valid")).then(|| name.to_owned())
            })
            .map(|name| std::fs::read(dir.join(format!("{name}.sip"))).expect("read fixture"))
            .collect()
    })
}

/// One edit of a message; positions are taken modulo the current length.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

/// Bytes that matter to the grammar, so that mutations reach deep paths more often than uniform
/// random bytes would.
const INTERESTING: &[u8] = b"\r\n\t :;,<>\"[]@%=?\\/.*0123456789\x00\x7f\xc3\xa9\xff";

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), proptest::sample::select(INTERESTING)]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), byte()).prop_map(|(p, b)| Mutation::Replace(p, b)),
        (any::<usize>(), byte()).prop_map(|(p, b)| Mutation::Insert(p, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1..64usize).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
    ]
}

fn apply(message: &mut Vec<u8>, mutation: &Mutation) {
    let len = message.len().max(1);
    match *mutation {
        Mutation::Replace(p, b) => {
            if !message.is_empty() {
                message[p % len] = b;
            }
        }
        Mutation::Insert(p, b) => message.insert(p % (message.len() + 1), b),
        Mutation::Delete(p) => {
            if !message.is_empty() {
                message.remove(p % len);
            }
        }
        Mutation::Truncate(p) => message.truncate(p % len),
        Mutation::Duplicate(p, n) => {
            let start = p % len;
            let end = (start + n).min(message.len());
            let copy = message.get(start..end).unwrap_or_default().to_vec();
            message.splice(start..start, copy);
        }
    }
}

/// Parses `input`; when it parses, its serialization must parse to the same message.
fn parse_and_reparse(input: &[u8]) {
    if let Ok(message) = parse(input) {
        let wire = message.to_bytes();
        let again = parse(&wire).expect("our own serialization must parse");
        assert_eq!(again, message, "round trip changed the message");
    } else if let Err(e) = parse(input) {
        // Building the reply must not panic either.
        let _ = e.reply();
    }
}

/// Feeds `stream` to a framer in `chunks`, parsing every message it cuts out.
fn frame_all(stream: &[u8], chunks: &[usize], max_size: usize) -> Result<Vec<Framed>, FrameError> {
    let mut framer = StreamFramer::new(max_size);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        framer.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(frame) = framer.next_frame()? {
            if let Framed::Message(bytes) = &frame {
                parse_and_reparse(bytes);
            }
            out.push(frame);
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(byte(), 0..2048)) {
        parse_and_reparse(&input);
        let _ = frame_all(&input, &[7, 64, 1], 1024);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        index in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..8),
        chunks in proptest::collection::vec(1..200usize, 1..8),
    ) {
        let fixtures = valid_fixtures();
        let mut message = fixtures[index % fixtures.len()].clone();
        for m in &mutations {
            apply(&mut message, m);
        }
        parse_and_reparse(&message);
        let _ = frame_all(&message, &chunks, 4096);
    }

    #[test]
    fn a_stream_of_valid_messages_frames_back_unchanged(
        picks in proptest::collection::vec(any::<usize>(), 1..6),
        chunks in proptest::collection::vec(1..300usize, 1..8),
    ) {
        let fixtures = valid_fixtures();
        // Our own serialization always carries a correct Content-Length, as streams require.
        let messages: Vec<Vec<u8>> = picks
            .iter()
            .map(|i| parse(&fixtures[i % fixtures.len()]).expect("valid fixture").to_bytes())
            .collect();
        let stream = messages.concat();
        let framed = frame_all(&stream, &chunks, 64 * 1024).expect("valid stream frames");
        let expected: Vec<Framed> = messages
            .into_iter()
            .map(|m| Framed::Message(m.into()))
            .collect();
        prop_assert_eq!(framed, expected);
    }
}
